#include "rpeak_detector.h"

#include <cmath>

namespace cardiospike {

namespace {

int round_to_int(float value) { return static_cast<int>(value + 0.5f); }

}  // namespace

RPeakDetector::RPeakDetector(float fs_hz)
    : fs_hz_(fs_hz < 100.0f ? 100.0f : (fs_hz > 2000.0f ? 2000.0f : fs_hz)),
      n_(0),
      x_previous_(0.0f),
      high_pass_previous_(0.0f),
      integral_previous_(0.0f),
      rising_(false),
      learning_max_(0.0f),
      learning_sum_(0.0),
      signal_level_(0.0f),
      noise_level_(0.0f),
      threshold_(0.0f),
      have_beat_(false),
      last_peak_integral_index_(0),
      last_r_index_(0),
      last_decay_index_(0),
      candidate_index_(0),
      candidate_value_(0.0f),
      confirmed_(false),
      beats_(0),
      rr_count_(0),
      rr_at_(0) {
  const float two_pi = 6.2831853f;
  high_pass_a_ = std::exp(-two_pi * 0.5f / fs_hz_);
  moving_average_n_ = round_to_int(0.020f * fs_hz_);
  integration_n_ = round_to_int(0.150f * fs_hz_);
  moving_average_.set_length(moving_average_n_);
  integration_.set_length(integration_n_);
  refractory_n_ = static_cast<uint32_t>(round_to_int(0.200f * fs_hz_));
  learning_n_ = static_cast<uint32_t>(round_to_int(2.0f * fs_hz_));
  quiet_n_ = static_cast<uint32_t>(round_to_int(2.5f * fs_hz_));
  timeout_n_ = static_cast<uint32_t>(round_to_int(4.0f * fs_hz_));
  for (int i = 0; i < kHistory; ++i) history_[i] = 0.0f;
  for (int i = 0; i < kRrCount; ++i) rr_samples_[i] = 0;
}

bool RPeakDetector::add(int32_t sample) {
  const uint64_t index = n_++;
  confirmed_ = false;
  const float x = static_cast<float>(sample);
  if (index == 0) x_previous_ = x;  // no step from 0 to the ADC's mid-scale at start

  // high-pass (baseline wander), then the moving average (noise, mains)
  const float high_pass = x - x_previous_ + high_pass_a_ * high_pass_previous_;
  x_previous_ = x;
  high_pass_previous_ = high_pass;
  const float filtered = moving_average_.add(high_pass);
  const float two_back = history_[(index + kHistory - 2) % kHistory];
  history_[index % kHistory] = filtered;

  // squared slope, integrated over 150 ms: one hump per QRS complex
  const float slope = index >= 2 ? filtered - two_back : 0.0f;
  const float integral = integration_.add(slope * slope);

  if (index < learning_n_) {
    // The first two seconds set the levels: a third of the largest hump for the signal, half
    // the mean for the noise (Pan and Tompkins' initialisation).
    if (integral > learning_max_) learning_max_ = integral;
    learning_sum_ += integral;
    integral_previous_ = integral;
    if (index + 1 == learning_n_) {
      signal_level_ = learning_max_ / 3.0f;
      noise_level_ = static_cast<float>(learning_sum_ / learning_n_) / 2.0f;
      update_threshold();
      last_decay_index_ = index;
    }
    return false;
  }

  if (integral > integral_previous_) {
    rising_ = true;
  } else if (integral < integral_previous_ && rising_) {
    rising_ = false;
    on_integral_peak(index - 1, integral_previous_);
  }
  integral_previous_ = integral;

  const uint64_t since_beat = have_beat_ ? index - last_peak_integral_index_ : index;
  const float mean_rr = mean_rr_samples();
  if (have_beat_ && mean_rr > 0.0f && candidate_value_ > 0.5f * threshold_ &&
      static_cast<float>(since_beat) > 1.66f * mean_rr) {
    // a beat too small for the threshold was probably missed: take the best candidate
    accept_beat(candidate_index_, candidate_value_, true);
  } else if (index - last_decay_index_ > quiet_n_ && since_beat > quiet_n_) {
    // 2.5 s without a beat: the signal got smaller (electrode moved, gain changed), so halve
    // the signal level until beats show again
    signal_level_ *= 0.5f;
    update_threshold();
    last_decay_index_ = index;
  }
  return confirmed_;
}

void RPeakDetector::on_integral_peak(uint64_t index, float value) {
  if (have_beat_ && index - last_peak_integral_index_ < refractory_n_) return;
  if (value > threshold_) {
    accept_beat(index, value, false);
    return;
  }
  noise_level_ = 0.125f * value + 0.875f * noise_level_;
  update_threshold();
  if (value > candidate_value_) {
    candidate_value_ = value;
    candidate_index_ = index;
  }
}

void RPeakDetector::accept_beat(uint64_t index, float value, bool search_back) {
  signal_level_ = search_back ? 0.25f * value + 0.75f * signal_level_
                              : 0.125f * value + 0.875f * signal_level_;
  update_threshold();

  // The R peak is the largest filtered deflection in the integration window that ends at the
  // integral's peak, moved back by the moving average's delay.
  const uint64_t newest = n_ - 1;
  uint64_t r_index = index;
  if (newest - index + static_cast<uint64_t>(integration_n_) < static_cast<uint64_t>(kHistory)) {
    float largest = -1.0f;
    const uint64_t window = static_cast<uint64_t>(integration_n_);
    const uint64_t start = index >= window ? index - window : 0;
    for (uint64_t i = start; i <= index; ++i) {
      const float magnitude = std::fabs(history_[i % kHistory]);
      if (magnitude > largest) {
        largest = magnitude;
        r_index = i;
      }
    }
  } else {
    r_index = index >= static_cast<uint64_t>(integration_n_ / 2) ? index - integration_n_ / 2 : 0;
  }
  const uint64_t delay = static_cast<uint64_t>((moving_average_n_ - 1) / 2);
  r_index = r_index >= delay ? r_index - delay : 0;

  if (have_beat_ && r_index > last_r_index_) {
    const uint64_t rr = r_index - last_r_index_;
    // an interval past 3 s is a pause or a lost signal, not a rate
    if (rr < static_cast<uint64_t>(3.0f * fs_hz_)) {
      rr_samples_[rr_at_] = static_cast<uint32_t>(rr);
      rr_at_ = (rr_at_ + 1) % kRrCount;
      if (rr_count_ < kRrCount) ++rr_count_;
    }
  }
  have_beat_ = true;
  last_r_index_ = r_index;
  last_peak_integral_index_ = index;
  last_decay_index_ = n_ - 1;
  candidate_value_ = 0.0f;
  confirmed_ = true;
  ++beats_;
}

float RPeakDetector::mean_rr_samples() const {
  if (rr_count_ == 0) return 0.0f;
  float sum = 0.0f;
  for (int i = 0; i < rr_count_; ++i) sum += static_cast<float>(rr_samples_[i]);
  return sum / static_cast<float>(rr_count_);
}

float RPeakDetector::heart_rate_bpm() const {
  if (rr_count_ == 0 || n_ - 1 - last_r_index_ > timeout_n_) return 0.0f;
  uint32_t sorted[kRrCount];
  for (int i = 0; i < rr_count_; ++i) {
    // insertion sort: eight values at most
    int j = i;
    while (j > 0 && sorted[j - 1] > rr_samples_[i]) {
      sorted[j] = sorted[j - 1];
      --j;
    }
    sorted[j] = rr_samples_[i];
  }
  const float median = rr_count_ % 2 ? static_cast<float>(sorted[rr_count_ / 2])
                                     : 0.5f * static_cast<float>(sorted[rr_count_ / 2 - 1] +
                                                                 sorted[rr_count_ / 2]);
  return 60.0f * fs_hz_ / median;
}

}  // namespace cardiospike
