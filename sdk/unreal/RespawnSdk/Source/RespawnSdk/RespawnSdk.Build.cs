// Respawn Server SDK module: compiles the C++ Server SDK (sdk/cpp), copied to
// Source/ThirdParty/respawn-sdk-cpp (see the plugin's README), into the
// dedicated server. Linux servers only: the SDK uses POSIX sockets.
using System.IO;
using UnrealBuildTool;

public class RespawnSdk : ModuleRules
{
	public RespawnSdk(ReadOnlyTargetRules Target) : base(Target)
	{
		PCHUsage = PCHUsageMode.UseExplicitOrSharedPCHs;
		CppStandard = CppStandardVersion.Cpp17;
		// The SDK catches exceptions thrown by game callbacks; none cross its API.
		bEnableExceptions = true;

		PublicDependencyModuleNames.AddRange(new string[] { "Core" });

		string SdkDir = Path.GetFullPath(Path.Combine(ModuleDirectory, "..", "ThirdParty", "respawn-sdk-cpp"));
		PublicIncludePaths.Add(Path.Combine(SdkDir, "include"));
		PrivateIncludePaths.Add(Path.Combine(SdkDir, "src"));
		PublicSystemLibraries.Add("pthread");
	}
}
