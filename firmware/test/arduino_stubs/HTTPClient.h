// Stand-in for the ESP32 core's HTTPClient.h (see Arduino.h here).
#pragma once
#include "WiFi.h"

class HTTPClient {
 public:
  void setTimeout(uint16_t timeout_ms);
  void setConnectTimeout(int32_t timeout_ms);
  void setReuse(bool reuse);
  bool begin(WiFiClient& client, String url);
  void addHeader(const String& name, const String& value);
  void collectHeaders(const char* header_keys[], const size_t header_keys_count);
  int POST(uint8_t* payload, size_t size);
  String header(const char* name);
  String getString();
  void end();
};
