// Stand-in for U8g2's U8g2lib.h (see Arduino.h here).
#pragma once
#include "Arduino.h"

struct u8g2_cb_t;
extern const u8g2_cb_t* U8G2_R0;
#define U8X8_PIN_NONE 255
extern const uint8_t u8g2_font_6x10_tf[];

class U8G2_SH1106_128X64_NONAME_F_HW_I2C {
 public:
  U8G2_SH1106_128X64_NONAME_F_HW_I2C(const u8g2_cb_t* rotation, uint8_t reset);
  bool begin();
  void clearBuffer();
  void sendBuffer();
  void setFont(const uint8_t* font);
  int drawStr(int x, int y, const char* text);
  int getStrWidth(const char* text);
  void drawVLine(int x, int y, int height);
};
