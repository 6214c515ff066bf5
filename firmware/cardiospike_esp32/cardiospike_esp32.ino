// CardioSpike ESP32 firmware: one ECG lead from a BioAmp Heart Candy, streamed to the server.
//
// ESP32-WROOM, Arduino core 2.x or 3.x, U8g2. Research software, not a medical device.
//
// - A hardware timer ticks at 250 Hz; its interrupt only wakes the sampling task, which reads
//   the ADC into the ring buffer (120 s). analogRead() takes a lock in the ESP32 cores 2.x and
//   3.x and must not run inside an interrupt; a task at the highest priority, woken by the
//   timer, keeps the timer's clock with a few microseconds of jitter.
// - loop() cuts the ring into 1 s chunks, posts them as binary protocol v1 bodies with
//   Authorization: Device <token>, keeps every chunk until the server acknowledges it, backs
//   off on failures and resends after a reconnect (src/cardiospike/uploader.h). Each post
//   carries the chunk's age (age_ms): sampling starts before Wi-Fi is up, and the server dates
//   the recording from the first chunk's age.
// - The SH1106 OLED shows the last two seconds of trace, the heart rate from the on-device
//   R-peak detector, and the link status.
//
// The portable logic lives in src/cardiospike (a link to ../lib/cardiospike) and is tested on
// the host: make -C firmware test. This file is the hardware glue and is not compiled in CI.
// Settings: secrets.h (copy secrets.example.h); wiring and gain: README.md.

#include <Arduino.h>
#include <HTTPClient.h>
#include <U8g2lib.h>
#include <WiFi.h>
#include <WiFiClientSecure.h>
#include <Wire.h>
#if __has_include(<esp_random.h>)
#include <esp_random.h>  // esp_random() (older cores declare it in esp_system.h)
#endif

#if __has_include("secrets.h")
#include "secrets.h"
#else
#error "Copy secrets.example.h to secrets.h in this folder and fill in Wi-Fi, server and token."
#endif

// --- the server settings, checked when the sketch compiles ----------------------------------
//
// HTTPClient takes the scheme from the URL (https:// means port 443, and a URL it cannot parse
// fails every post) but speaks TLS only through the client it is handed, and client() below
// hands it WiFiClientSecure exactly when CARDIOSPIKE_SERVER_ROOT_CA is set. An https:// URL
// without the certificate would send the token in clear text to port 443 (a TLS proxy answers
// 400, and every chunk is dropped); an http:// URL with it would start a TLS handshake with a
// plain HTTP server (no answer, every chunk retried until the ring overwrites it).

struct ServerSettings {
  static constexpr bool starts_with(const char* text, const char* prefix) {
    return *prefix == '\0' || (*text == *prefix && starts_with(text + 1, prefix + 1));
  }
  static constexpr bool ends_with_slash(const char* text) {
    return *text != '\0' && (text[1] == '\0' ? *text == '/' : ends_with_slash(text + 1));
  }
};

static_assert(ServerSettings::starts_with(CARDIOSPIKE_SERVER_URL, "http://") ||
                  ServerSettings::starts_with(CARDIOSPIKE_SERVER_URL, "https://"),
              "CARDIOSPIKE_SERVER_URL must start with http:// or https:// (lower case)");
static_assert(!ServerSettings::ends_with_slash(CARDIOSPIKE_SERVER_URL),
              "CARDIOSPIKE_SERVER_URL must not end with a slash: /api/device/v1/... follows it");
#ifdef CARDIOSPIKE_SERVER_ROOT_CA
static_assert(ServerSettings::starts_with(CARDIOSPIKE_SERVER_URL, "https://"),
              "CARDIOSPIKE_SERVER_ROOT_CA is set, so CARDIOSPIKE_SERVER_URL must start with "
              "https://: over http:// the TLS client gets no answer and every chunk is retried");
#else
static_assert(!ServerSettings::starts_with(CARDIOSPIKE_SERVER_URL, "https://"),
              "CARDIOSPIKE_SERVER_URL is https:// but CARDIOSPIKE_SERVER_ROOT_CA is not set: the "
              "device would send its token in clear text to port 443. Set the server's root "
              "certificate (secrets.example.h) or use http:// on a trusted network");
#endif

#include "src/cardiospike/chunk_encoder.h"
#include "src/cardiospike/retry_queue.h"
#include "src/cardiospike/rpeak_detector.h"
#include "src/cardiospike/sample_ring.h"
#include "src/cardiospike/uploader.h"

namespace cs = cardiospike;

// --- hardware settings (see README.md: wiring, gain) ----------------------------------------

const int kEcgPin = 34;       // BioAmp Heart Candy OUT; ADC1 (ADC2 is unusable with Wi-Fi on)
const int kLeadOffPlusPin = -1;   // LO+ of an AD8232-style front end, or -1 when not wired
const int kLeadOffMinusPin = -1;  // LO-, or -1
const uint32_t kSampleRateHz = 250;

// ADC units per millivolt at the electrodes: the front end's gain (x2157 for the Heart Candy)
// times the ADC's counts per millivolt (4095 counts over about 3300 mV at 11 dB attenuation).
// The server stores it with the recording; README.md says how to derive and check it.
const float kGainAdcPerMv = 2157.0f * 4095.0f / 3300.0f;  // about 2677
// The ADC value of 0 mV: the Heart Candy centres its output at half its supply.
const int16_t kBaselineAdc = 2048;

const uint32_t kRingSeconds = 120;  // what a Wi-Fi outage may last without losing samples
const uint16_t kChunkFrames = kSampleRateHz;  // 1 s per chunk
const uint32_t kBackoffBaseMs = 1000;
// Well under the server's DEVICE_OFFLINE_S (30 s): a server restart of 20 s must not become
// 30 s of silence and a "device offline" alarm (a 60-s cap can keep a device away a minute
// after a 17-s restart). 8 s of retries from every device costs the server little.
const uint32_t kBackoffMaxMs = 8000;
const uint16_t kHttpTimeoutMs = 4000;    // to connect; and the longest silence in an answer
const uint32_t kTlsHandshakeTimeoutS = 8;  // https:// only (the ESP32 core's default is 120 s)

// --- state ------------------------------------------------------------------------------------

const uint32_t kRingFrames = kRingSeconds * kSampleRateHz;
// More queue slots than the ring holds chunks: entries whose frames the ring overwrote are
// dropped before the queue can fill up.
const size_t kQueueSlots = kRingSeconds + 8;

static int16_t ring_storage[kRingFrames];  // 60 kB of static DRAM, nothing from the heap
static cs::SampleRing ring(ring_storage, kRingFrames, 1);
static cs::PendingChunk queue_slots[kQueueSlots];
static cs::RetryQueue retry_queue(queue_slots, kQueueSlots);
static int16_t chunk_scratch[kChunkFrames];
static uint8_t chunk_body[kChunkFrames * 2 + cs::kBinaryHeaderBytes + cs::kBinaryAgeBytes +
                          cs::kBinaryCrcBytes];

static cs::RPeakDetector detector(static_cast<float>(kSampleRateHz));
static uint64_t detector_next_frame = 0;

U8G2_SH1106_128X64_NONAME_F_HW_I2C display(U8G2_R0, U8X8_PIN_NONE);  // SDA 21, SCL 22

static hw_timer_t* sample_timer = nullptr;
static TaskHandle_t sampling_task_handle = nullptr;
static volatile uint32_t sample_overruns = 0;  // ticks the sampling task came too late for
static uint32_t wifi_last_try_ms = 0;

// --- the outside world, behind the portable core's interfaces ---------------------------------

class ArduinoClock : public cs::Clock {
 public:
  uint32_t now_ms() override { return millis(); }
};

class EspRandom : public cs::RandomSource {
 public:
  uint32_t next_u32() override { return esp_random(); }
};

class SerialLog : public cs::Logger {
 public:
  void line(const char* text) override {
    Serial.print("[cardiospike] ");
    Serial.println(text);
  }
};

static const char kChunksUrl[] = CARDIOSPIKE_SERVER_URL "/api/device/v1/chunks/";

class WifiTransport : public cs::ChunkTransport {
 public:
  bool connected() override {
    const bool up = WiFi.status() == WL_CONNECTED;
    // a connection kept open from before the outage is dead: the next post opens a new one
    if (link_was_up_ && !up) client().stop();
    link_was_up_ = up;
    return up;
  }

  void post(const uint8_t* body, size_t length, const char* content_type,
            cs::HttpReply* reply) override {
    static const char* kCollect[] = {"Retry-After", "Location"};
    // One HTTPClient for every post, begun and ended each time as the core's ReuseConnection
    // example does: end() leaves the connection open when the server keeps it alive, and the
    // next POST goes out on it without a new TCP connect or TLS handshake. (A local HTTPClient
    // would close it in its destructor.) Untested on hardware: see README.md.
    http_.setTimeout(kHttpTimeoutMs);
    http_.setConnectTimeout(kHttpTimeoutMs);
    http_.setReuse(true);
    if (!http_.begin(client(), kChunksUrl)) {
      reply->status = 0;
      return;
    }
    http_.addHeader("Authorization", "Device " CARDIOSPIKE_DEVICE_TOKEN);
    http_.addHeader("Content-Type", content_type);
    http_.collectHeaders(kCollect, 2);
    const int code = http_.POST(const_cast<uint8_t*>(body), length);
    // negative codes are HTTPClient's own errors (refused, timeout, lost): no answer; it has
    // closed the connection then, so the next post opens a new one
    reply->status = code > 0 ? code : 0;
    reply->retry_after_s = static_cast<uint32_t>(http_.header("Retry-After").toInt());
    const String location = http_.header("Location");
    strncpy(reply->location, location.c_str(), sizeof reply->location - 1);
    reply->location[sizeof reply->location - 1] = '\0';
    if (code > 0) {
      const String text = http_.getString();  // reads the whole answer, so the next can follow
      strncpy(reply->body, text.c_str(), sizeof reply->body - 1);
      reply->body[sizeof reply->body - 1] = '\0';
    }
    http_.end();  // keeps the connection unless the server said Connection: close
  }

 private:
  WiFiClient& client() {
#ifdef CARDIOSPIKE_SERVER_ROOT_CA
    static WiFiClientSecure secure;
    static bool configured = false;
    if (!configured) {
      secure.setCACert(CARDIOSPIKE_SERVER_ROOT_CA);
      secure.setHandshakeTimeout(kTlsHandshakeTimeoutS);
      configured = true;
    }
    return secure;
#else
    static WiFiClient plain;
    return plain;
#endif
  }

  HTTPClient http_;
  bool link_was_up_ = false;
};

static ArduinoClock clock_source;
static EspRandom random_source;
static SerialLog serial_log;
static WifiTransport transport;
static cs::Uploader* uploader = nullptr;  // made in setup(), once the session id is drawn

// --- sampling ----------------------------------------------------------------------------------

void IRAM_ATTR on_sample_timer() {
  BaseType_t woken = pdFALSE;
  vTaskNotifyGiveFromISR(sampling_task_handle, &woken);
  if (woken) portYIELD_FROM_ISR();
}

void sampling_task(void*) {
  for (;;) {
    // the count of ticks since the last wake-up: more than one means we were late
    const uint32_t ticks = ulTaskNotifyTake(pdTRUE, portMAX_DELAY);
    const int16_t sample = static_cast<int16_t>(analogRead(kEcgPin));
    // one frame per tick whatever happened, so that a frame's index stays its time
    for (uint32_t i = 0; i < ticks; ++i) ring.push(sample);
    if (ticks > 1) sample_overruns += ticks - 1;
  }
}

bool leads_off() {
  bool off = false;
  if (kLeadOffPlusPin >= 0) off = off || digitalRead(kLeadOffPlusPin) == HIGH;
  if (kLeadOffMinusPin >= 0) off = off || digitalRead(kLeadOffMinusPin) == HIGH;
  return off;
}

void start_sample_timer() {
#if defined(ESP_ARDUINO_VERSION_MAJOR) && ESP_ARDUINO_VERSION_MAJOR >= 3
  sample_timer = timerBegin(1000000);  // 1 MHz tick
  timerAttachInterrupt(sample_timer, &on_sample_timer);
  timerAlarm(sample_timer, 1000000 / kSampleRateHz, true, 0);
#else
  sample_timer = timerBegin(0, 80, true);  // 80 MHz APB clock / 80: a 1 MHz tick
  timerAttachInterrupt(sample_timer, &on_sample_timer, true);
  timerAlarmWrite(sample_timer, 1000000 / kSampleRateHz, true);
  timerAlarmEnable(sample_timer);
#endif
}

// --- Wi-Fi -------------------------------------------------------------------------------------

void maintain_wifi() {
  // The driver reconnects by itself; when it has not managed for a while, start over, waiting
  // longer each time so a missing access point does not keep the radio busy.
  static uint32_t wait_ms = 10000;
  if (WiFi.status() == WL_CONNECTED) {
    wait_ms = 10000;
    wifi_last_try_ms = millis();
    return;
  }
  const uint32_t now = millis();
  if (now - wifi_last_try_ms < wait_ms) return;
  wifi_last_try_ms = now;
  // doubled up to a minute: 10, 20, 40, 60, 60 ... s (doubling 40 s first would wait 80 s once)
  wait_ms = wait_ms < 30000 ? wait_ms * 2 : 60000;
  Serial.println("[cardiospike] Wi-Fi down: reconnecting");
  WiFi.disconnect();
  WiFi.begin(CARDIOSPIKE_WIFI_SSID, CARDIOSPIKE_WIFI_PASSWORD);
}

// --- heart rate and display ----------------------------------------------------------------------

void update_heart_rate() {
  // Feed the detector every frame it has not seen, in blocks, from the ring.
  int16_t block[64];
  const uint64_t written = ring.frames_written();
  if (detector_next_frame < ring.oldest_available()) detector_next_frame = ring.oldest_available();
  while (written - detector_next_frame >= 64) {
    if (!ring.copy(detector_next_frame, 64, block)) break;
    for (int i = 0; i < 64; ++i) detector.add(block[i]);
    detector_next_frame += 64;
  }
}

void draw_display(bool lead_off) {
  static int16_t trace[2 * kSampleRateHz];  // the last 2 s, 4 frames per pixel column
  const uint32_t n = 2 * kSampleRateHz;
  const uint64_t written = ring.frames_written();
  display.clearBuffer();
  display.setFont(u8g2_font_6x10_tf);

  char line[32];
  const float bpm = detector.heart_rate_bpm();
  if (lead_off || bpm <= 0.0f) {
    snprintf(line, sizeof line, lead_off ? "LEADS OFF" : "HR --");
  } else {
    snprintf(line, sizeof line, "HR %d", static_cast<int>(bpm + 0.5f));
  }
  display.drawStr(0, 9, line);
  snprintf(line, sizeof line, "%s q%u", cs::link_state_name(uploader->link_state()),
           static_cast<unsigned>(uploader->pending_chunks()));
  display.drawStr(128 - display.getStrWidth(line), 9, line);

  if (written > n && ring.copy(written - n, n, trace)) {
    // scale the window's range to the 50 rows under the text
    int16_t low = trace[0], high = trace[0];
    for (uint32_t i = 1; i < n; ++i) {
      if (trace[i] < low) low = trace[i];
      if (trace[i] > high) high = trace[i];
    }
    const int32_t span = high - low > 40 ? high - low : 40;
    const int top = 13, rows = 50;
    for (int x = 0; x < 125; ++x) {
      // each column draws the min-max of its four frames, so no QRS falls between columns
      int16_t column_low = trace[4 * x], column_high = trace[4 * x];
      for (int k = 1; k < 4; ++k) {
        if (trace[4 * x + k] < column_low) column_low = trace[4 * x + k];
        if (trace[4 * x + k] > column_high) column_high = trace[4 * x + k];
      }
      const int y_high = top + rows - 1 - (column_high - low) * (rows - 1) / span;
      const int y_low = top + rows - 1 - (column_low - low) * (rows - 1) / span;
      display.drawVLine(x, y_high, y_low - y_high + 1);
    }
  }
  display.sendBuffer();
}

// --- setup and loop ----------------------------------------------------------------------------

void setup() {
  Serial.begin(115200);
  analogReadResolution(12);  // 0-4095; the core's default attenuation (11 dB) spans ~0-3.1 V
  if (kLeadOffPlusPin >= 0) pinMode(kLeadOffPlusPin, INPUT);
  if (kLeadOffMinusPin >= 0) pinMode(kLeadOffMinusPin, INPUT);

  Wire.begin();
  Wire.setClock(400000);
  display.begin();

  WiFi.mode(WIFI_STA);
  WiFi.setAutoReconnect(true);
  WiFi.begin(CARDIOSPIKE_WIFI_SSID, CARDIOSPIKE_WIFI_PASSWORD);
  wifi_last_try_ms = millis();

  // esp_random() draws on radio noise once the radio is on: a fresh session at every boot
  cs::UploaderConfig config;
  config.session_id = esp_random();
  config.fs_hz = static_cast<float>(kSampleRateHz);
  config.gain_adc_per_mv = kGainAdcPerMv;
  config.baseline_adc = kBaselineAdc;
  config.chunk_frames = kChunkFrames;
  config.backoff_base_ms = kBackoffBaseMs;
  config.backoff_max_ms = kBackoffMaxMs;
  static cs::Uploader uploader_instance(config, ring, retry_queue, transport, clock_source,
                                        random_source, serial_log, chunk_scratch, chunk_body,
                                        sizeof chunk_body);
  uploader = &uploader_instance;
  char session[9];
  cs::format_session_id(config.session_id, session);
  Serial.printf("[cardiospike] session %s, %u Hz, gain %.1f ADC/mV, ring %u s\n", session,
                static_cast<unsigned>(kSampleRateHz), kGainAdcPerMv,
                static_cast<unsigned>(kRingSeconds));

  // the sampling task on the loop's core, above everything else there
  xTaskCreatePinnedToCore(sampling_task, "ecg-sampling", 2048, nullptr,
                          configMAX_PRIORITIES - 1, &sampling_task_handle, 1);
  start_sample_timer();
}

void loop() {
  static uint32_t last_draw_ms = 0;
  static uint32_t reported_overruns = 0;
  const bool lead_off = leads_off();
  uploader->set_lead_off(lead_off);
  uploader->set_battery_pct(cs::kBatteryUnknown);  // no fuel gauge on a bare ESP32 board

  maintain_wifi();
  uploader->poll();  // at most one POST, which can block for seconds (README.md)
  update_heart_rate();

  const uint32_t now = millis();
  if (now - last_draw_ms >= 100) {  // 10 frames per second: a frame costs ~25 ms of I2C
    last_draw_ms = now;
    draw_display(lead_off);
  }
  if (sample_overruns != reported_overruns) {
    reported_overruns = sample_overruns;
    Serial.printf("[cardiospike] sampling late %u times so far\n",
                  static_cast<unsigned>(reported_overruns));
  }
  delay(1);  // lets the idle task feed the watchdog
}
