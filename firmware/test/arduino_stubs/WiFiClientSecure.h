// Stand-in for the ESP32 core's WiFiClientSecure.h (see Arduino.h here).
#pragma once
#include "WiFi.h"

class WiFiClientSecure : public WiFiClient {
 public:
  void setCACert(const char* root_ca);
  void setHandshakeTimeout(unsigned long handshake_timeout_s);
  void stop() override;
};
