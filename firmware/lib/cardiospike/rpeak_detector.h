// A small streaming R-peak detector for the heart rate on the device's screen.
//
// After Pan J, Tompkins WJ. A real-time QRS detection algorithm. IEEE Trans Biomed Eng
// 32(3):230-236 (1985), cut down: a 0.5 Hz high-pass, a 20 ms moving average (its zero falls
// on 50 Hz mains at 250 Hz), a two-sample derivative, squaring, a 150 ms moving-window
// integral, and an adaptive threshold between running signal and noise peak levels, with a
// 200 ms refractory period and a search back for a missed beat after 1.66 RR intervals. The
// server runs its own detectors on the stored samples; this one only drives the display, so it
// favours a few hundred bytes of float state over the last beat of sensitivity.
#pragma once

#include <cstdint>

namespace cardiospike {

// The mean of the last `length` values (1 to MaxLength), in a fixed array.
template <int MaxLength>
class MovingMean {
 public:
  MovingMean() : length_(1), at_(0), sum_(0.0f) {
    for (int i = 0; i < MaxLength; ++i) values_[i] = 0.0f;
  }

  void set_length(int length) {
    length_ = length < 1 ? 1 : (length > MaxLength ? MaxLength : length);
  }

  float add(float value) {
    sum_ += value - values_[at_];
    values_[at_] = value;
    if (++at_ == length_) {
      at_ = 0;
      // a float running sum drifts; start it afresh once per window
      sum_ = 0.0f;
      for (int i = 0; i < length_; ++i) sum_ += values_[i];
    }
    return sum_ / static_cast<float>(length_);
  }

 private:
  float values_[MaxLength];
  int length_;
  int at_;
  float sum_;
};

class RPeakDetector {
 public:
  // fs_hz: 100 to 2000 Hz (clamped), as the protocol allows.
  explicit RPeakDetector(float fs_hz);

  // Feed the next sample (ADC units, any offset and gain). Returns true when this call
  // confirmed a new R peak; its index is last_peak_index(). A peak is confirmed some 150-250 ms
  // after it happened (the integration window and the filters' delay).
  bool add(int32_t sample);

  // Sample index (from the first add(), from 0) of the last R peak.
  uint64_t last_peak_index() const { return last_r_index_; }
  uint32_t beats() const { return beats_; }
  // Heart rate from the median of the last eight RR intervals, in beats per minute; 0 when it
  // is unknown (fewer than two beats, or none for 4 s: a pause, an electrode off).
  float heart_rate_bpm() const;

 private:
  static const int kMaxMovingAverage = 40;  // 20 ms at 2000 Hz
  static const int kMaxIntegration = 300;   // 150 ms at 2000 Hz
  static const int kHistory = 512;          // filtered samples kept to place the R peak
  static const int kRrCount = 8;

  void on_integral_peak(uint64_t index, float value);
  void accept_beat(uint64_t index, float value, bool search_back);
  void update_threshold() { threshold_ = noise_level_ + 0.25f * (signal_level_ - noise_level_); }
  float mean_rr_samples() const;

  float fs_hz_;
  float high_pass_a_;
  int moving_average_n_;
  int integration_n_;
  uint32_t refractory_n_;
  uint32_t learning_n_;
  uint32_t quiet_n_;    // no beat for this long lowers the signal level
  uint32_t timeout_n_;  // no beat for this long makes the heart rate unknown

  uint64_t n_;  // index of the next sample
  float x_previous_;
  float high_pass_previous_;
  MovingMean<kMaxMovingAverage> moving_average_;
  float history_[kHistory];
  MovingMean<kMaxIntegration> integration_;
  float integral_previous_;
  bool rising_;

  float learning_max_;
  double learning_sum_;
  float signal_level_;
  float noise_level_;
  float threshold_;

  bool have_beat_;
  uint64_t last_peak_integral_index_;  // where the integral peaked for the last beat
  uint64_t last_r_index_;
  uint64_t last_decay_index_;
  uint64_t candidate_index_;  // the highest sub-threshold peak since the last beat
  float candidate_value_;
  bool confirmed_;
  uint32_t beats_;

  uint32_t rr_samples_[kRrCount];
  int rr_count_;
  int rr_at_;
};

}  // namespace cardiospike
