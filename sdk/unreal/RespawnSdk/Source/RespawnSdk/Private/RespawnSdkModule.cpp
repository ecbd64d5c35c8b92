// Module start-up and shutdown: create the SDK, close it (its threads stop).
#include "RespawnSdkModule.h"

void FRespawnSdkModule::StartupModule()
{
	Server = MakeUnique<respawn::ServerSdk>();
	Server->SetLogger([](const std::string& Line) {
		UE_LOG(LogTemp, Log, TEXT("respawn-sdk: %s"), UTF8_TO_TCHAR(Line.c_str()));
	});
}

void FRespawnSdkModule::ShutdownModule()
{
	if (Server)
	{
		Server->Close();
		Server.Reset();
	}
}

IMPLEMENT_MODULE(FRespawnSdkModule, RespawnSdk)
