// Compiles the C++ Server SDK's sources (Source/ThirdParty/respawn-sdk-cpp/src)
// into this module, so the plugin needs no prebuilt library.
THIRD_PARTY_INCLUDES_START
#include "json.cpp"
#include "http.cpp"
#include "server_sdk.cpp"
THIRD_PARTY_INCLUDES_END
