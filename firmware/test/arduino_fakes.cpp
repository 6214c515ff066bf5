// Definitions of the stand-in Arduino, U8g2 and FreeRTOS declarations (test/arduino_stubs) for
// the sketch's host test: the network and HTTPClient follow the model in sketch_fakes.h; the
// rest (ADC, display, timer, tasks, serial) does nothing.

#include "sketch_fakes.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

#include "Arduino.h"
#include "HTTPClient.h"
#include "U8g2lib.h"
#include "WiFi.h"
#include "WiFiClientSecure.h"
#include "Wire.h"

namespace fake {
Net net;
}

using fake::net;

unsigned long millis() { return net.millis; }
void delay(unsigned long ms) { net.millis += static_cast<uint32_t>(ms); }
uint16_t analogRead(uint8_t) { return 2048; }
void analogReadResolution(uint8_t) {}
int digitalRead(uint8_t) { return 0; }
void pinMode(uint8_t, uint8_t) {}
uint32_t esp_random() { return 0x5eed1234u; }

String::String(const char* text) : text_(text ? text : "") {}
String String::operator+(const char* text) const { return String((text_ + text).c_str()); }
const char* String::c_str() const { return text_.c_str(); }
long String::toInt() const { return std::strtol(text_.c_str(), nullptr, 10); }

HardwareSerial Serial;
void HardwareSerial::begin(unsigned long) {}
size_t HardwareSerial::print(const char*) { return 0; }
size_t HardwareSerial::println(const char*) { return 0; }
size_t HardwareSerial::printf(const char*, ...) { return 0; }

void vTaskNotifyGiveFromISR(TaskHandle_t, BaseType_t*) {}
void portYIELD_FROM_ISR() {}
uint32_t ulTaskNotifyTake(BaseType_t, TickType_t) { return 0; }
BaseType_t xTaskCreatePinnedToCore(void (*)(void*), const char*, uint32_t, void*, UBaseType_t,
                                   TaskHandle_t*, BaseType_t) {
  return pdTRUE;  // the test pushes frames into the ring itself
}
hw_timer_t* timerBegin(uint8_t, uint16_t, bool) { return nullptr; }
void timerAttachInterrupt(hw_timer_t*, void (*)(), bool) {}
void timerAlarmWrite(hw_timer_t*, uint64_t, bool) {}
void timerAlarmEnable(hw_timer_t*) {}

const u8g2_cb_t* U8G2_R0 = nullptr;
const uint8_t u8g2_font_6x10_tf[] = {0};
U8G2_SH1106_128X64_NONAME_F_HW_I2C::U8G2_SH1106_128X64_NONAME_F_HW_I2C(const u8g2_cb_t*,
                                                                       uint8_t) {}
bool U8G2_SH1106_128X64_NONAME_F_HW_I2C::begin() { return true; }
void U8G2_SH1106_128X64_NONAME_F_HW_I2C::clearBuffer() {}
void U8G2_SH1106_128X64_NONAME_F_HW_I2C::sendBuffer() {}
void U8G2_SH1106_128X64_NONAME_F_HW_I2C::setFont(const uint8_t*) {}
int U8G2_SH1106_128X64_NONAME_F_HW_I2C::drawStr(int, int, const char*) { return 0; }
int U8G2_SH1106_128X64_NONAME_F_HW_I2C::getStrWidth(const char*) { return 0; }
void U8G2_SH1106_128X64_NONAME_F_HW_I2C::drawVLine(int, int, int) {}

TwoWire Wire;
bool TwoWire::begin() { return true; }
void TwoWire::setClock(uint32_t) {}

WiFiClass WiFi;
wl_status_t WiFiClass::status() { return net.wifi_up ? WL_CONNECTED : WL_IDLE_STATUS; }
bool WiFiClass::mode(wifi_mode_t) { return true; }
bool WiFiClass::setAutoReconnect(bool) { return true; }
wl_status_t WiFiClass::begin(const char*, const char*) {
  net.wifi_begins_ms.push_back(net.millis);
  return status();
}
bool WiFiClass::disconnect() { return true; }

// One TCP connection, whichever client object the sketch uses.
void WiFiClient::stop() { net.close_tcp(); }
void WiFiClientSecure::setCACert(const char*) {}
void WiFiClientSecure::setHandshakeTimeout(unsigned long) {}
void WiFiClientSecure::stop() { net.close_tcp(); }

// --- HTTPClient, as the core's HTTPClient.cpp behaves (sketch_fakes.h) -------------------------

void HTTPClient::setTimeout(uint16_t) {}
void HTTPClient::setConnectTimeout(int32_t) {}
void HTTPClient::setReuse(bool reuse) { net.reuse = reuse; }

bool HTTPClient::begin(WiFiClient&, String url) {
  ++net.begins;
  net.url = url.c_str();
  net.authorization.clear();
  net.content_type.clear();
  return net.url.compare(0, 7, "http://") == 0 || net.url.compare(0, 8, "https://") == 0;
}

void HTTPClient::addHeader(const String& name, const String& value) {
  const std::string key = name.c_str();
  if (key == "Authorization") net.authorization = value.c_str();
  if (key == "Content-Type") net.content_type = value.c_str();
}

void HTTPClient::collectHeaders(const char* header_keys[], const size_t header_keys_count) {
  // the core makes a new array of collected headers: no value survives from the last answer
  net.collected_retry_after.clear();
  net.collected_location.clear();
  net.collecting = false;
  for (size_t i = 0; i < header_keys_count; ++i) {
    if (std::string(header_keys[i]) == "Retry-After") net.collecting = true;
  }
}

static fake::Answer acknowledge(uint32_t seq) {
  char body[120];
  std::snprintf(body, sizeof body, "{\"recording\": 1, \"seq\": %u, \"stored\": true, "
                "\"next_seq\": %u}", seq, seq + 1);
  fake::Answer answer = {201, body, "", "", true};
  return answer;
}

int HTTPClient::POST(uint8_t* payload, size_t size) {
  fake::Post post;
  post.url = net.url;
  post.authorization = net.authorization;
  post.content_type = net.content_type;
  post.body.assign(payload, payload + size);
  fake::Answer answer = acknowledge(size >= 16 ? post.seq() : 0);
  if (!net.answers.empty()) {
    answer = net.answers.front();
    net.answers.pop_front();
  }
  if (net.tcp_open && net.tcp_dead) {
    // a connection kept from before a Wi-Fi drop: the request goes nowhere, and HTTPClient
    // gives up after its timeout (returnError() stops the client)
    ++net.posts_on_dead_connection;
    net.close_tcp();
    return fake::kErrorReadTimeout;
  }
  if (!net.tcp_open) {  // connect(): "already connected, try reuse" otherwise
    if (answer.code == fake::kErrorConnectionRefused) return answer.code;
    net.tcp_open = true;
    ++net.connections_opened;
  }
  post.connection = net.connections_opened;
  net.posts.push_back(post);
  if (answer.code < 0) {  // returnError(): an error stops the client
    net.close_tcp();
    return answer.code;
  }
  if (net.collecting) {
    net.collected_retry_after = answer.retry_after;
    net.collected_location = answer.location;
  }
  net.can_reuse = answer.keep_alive;
  net.pending_body = answer.body;
  net.body_unread = true;
  return answer.code;
}

String HTTPClient::header(const char* name) {
  const std::string key = name;
  if (key == "Retry-After") return String(net.collected_retry_after.c_str());
  if (key == "Location") return String(net.collected_location.c_str());
  return String();
}

String HTTPClient::getString() {
  const std::string body = net.pending_body;
  net.body_unread = false;
  net.pending_body.clear();
  end();  // writeToStream() ends the request itself once the body is read
  --net.ends;  // counted as the sketch's own end() calls only
  return String(body.c_str());
}

void HTTPClient::end() {
  ++net.ends;
  if (!net.tcp_open) return;
  if (net.reuse && net.can_reuse) {
    if (net.body_unread) ++net.kept_with_body_unread;
    return;  // "tcp keep open for reuse"
  }
  net.close_tcp();
}
