// Stand-in for the ESP32 core's WiFi.h (see Arduino.h here).
#pragma once
#include "Arduino.h"

enum wl_status_t { WL_IDLE_STATUS = 0, WL_CONNECTED = 3 };
enum wifi_mode_t { WIFI_STA = 1 };

class WiFiClient {
 public:
  virtual ~WiFiClient() {}
  virtual void stop();
};

class WiFiClass {
 public:
  wl_status_t status();
  bool mode(wifi_mode_t mode);
  bool setAutoReconnect(bool reconnect);
  wl_status_t begin(const char* ssid, const char* password);
  bool disconnect();
};
extern WiFiClass WiFi;
