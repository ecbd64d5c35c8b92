// The Respawn Server SDK module: owns the process's one respawn::ServerSdk.
// Everything else is the C++ SDK's API (respawn/server_sdk.h): see
// sdk/cpp/README.md, and this plugin's README for a GameMode example.
#pragma once

#include "CoreMinimal.h"
#include "Modules/ModuleManager.h"

THIRD_PARTY_INCLUDES_START
#include "respawn/server_sdk.h"
THIRD_PARTY_INCLUDES_END

class RESPAWNSDK_API FRespawnSdkModule : public IModuleInterface
{
public:
	static FRespawnSdkModule& Get()
	{
		return FModuleManager::LoadModuleChecked<FRespawnSdkModule>("RespawnSdk");
	}

	// The SDK, configured from the RESPAWN_* environment the agent sets.
	// Check Sdk().Init().IsSuccess() before ProcessReady: false when the
	// server was not launched by a Respawn agent (e.g. in the editor).
	respawn::ServerSdk& Sdk() { return *Server; }

	// Converts an SDK error to text for UE_LOG.
	static FString Describe(const respawn::Result& Result)
	{
		return UTF8_TO_TCHAR(Result.ToString().c_str());
	}

	virtual void StartupModule() override;
	virtual void ShutdownModule() override;

private:
	TUniquePtr<respawn::ServerSdk> Server;
};
