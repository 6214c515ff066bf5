// Stand-ins for the ESP32 Arduino core, U8g2 and FreeRTOS, just enough for `make check-sketch`
// to parse the sketch on the host (g++ -fsyntax-only). They mirror the signatures the sketch
// calls as the author understood them from the cores' headers; they prove the sketch is
// well-formed C++ against the portable core, not that it builds for the ESP32. Only
// declarations here: test/arduino_fakes.cpp defines them for `sketch_tests`, which runs the
// sketch's HTTP glue against a model of the core's HTTPClient (test/test_sketch_transport.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#define IRAM_ATTR
#define HIGH 1
#define INPUT 0

unsigned long millis();
void delay(unsigned long ms);
uint16_t analogRead(uint8_t pin);
void analogReadResolution(uint8_t bits);
int digitalRead(uint8_t pin);
void pinMode(uint8_t pin, uint8_t mode);
uint32_t esp_random();

class String {
 public:
  String(const char* text = "");
  String operator+(const char* text) const;
  const char* c_str() const;
  long toInt() const;

 private:
  std::string text_;  // for the fakes only
};

class HardwareSerial {
 public:
  void begin(unsigned long baud);
  size_t print(const char* text);
  size_t println(const char* text);
  size_t printf(const char* format, ...) __attribute__((format(printf, 2, 3)));
};
extern HardwareSerial Serial;

// FreeRTOS
typedef int BaseType_t;
typedef unsigned int UBaseType_t;
typedef void* TaskHandle_t;
typedef uint32_t TickType_t;
#define pdFALSE 0
#define pdTRUE 1
#define portMAX_DELAY 0xFFFFFFFFu
#define configMAX_PRIORITIES 25
void vTaskNotifyGiveFromISR(TaskHandle_t task, BaseType_t* woken);
void portYIELD_FROM_ISR();
uint32_t ulTaskNotifyTake(BaseType_t clear_on_exit, TickType_t wait);
BaseType_t xTaskCreatePinnedToCore(void (*task)(void*), const char* name, uint32_t stack_bytes,
                                   void* parameter, UBaseType_t priority, TaskHandle_t* handle,
                                   BaseType_t core);

// the 2.x timer API (the sketch picks it when ESP_ARDUINO_VERSION_MAJOR is below 3)
struct hw_timer_t;
hw_timer_t* timerBegin(uint8_t timer, uint16_t divider, bool count_up);
void timerAttachInterrupt(hw_timer_t* timer, void (*isr)(), bool edge);
void timerAlarmWrite(hw_timer_t* timer, uint64_t alarm, bool reload);
void timerAlarmEnable(hw_timer_t* timer);
