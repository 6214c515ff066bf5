// Stand-in for the Arduino Wire.h (see Arduino.h here).
#pragma once
#include "Arduino.h"

class TwoWire {
 public:
  bool begin();
  void setClock(uint32_t hz);
};
extern TwoWire Wire;
