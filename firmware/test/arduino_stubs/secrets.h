// For `make check-sketch` only: the sketch parsed with the example settings.
#pragma once
#include "../../cardiospike_esp32/secrets.example.h"
