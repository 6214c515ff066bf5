// The on-screen heart rate: R peaks of a synthetic ECG with noise and baseline wander.

#include <cmath>
#include <cstdio>
#include <vector>

#include "check.h"
#include "rpeak_detector.h"

using namespace cardiospike;

namespace {

// A deterministic generator, so the synthetic ECG is the same on every run and host.
class Lcg {
 public:
  explicit Lcg(uint32_t seed) : state_(seed) {}
  double uniform() {  // [0, 1)
    state_ = state_ * 1664525u + 1013904223u;
    return (state_ >> 8) / 16777216.0;
  }
  double normal() {  // Box-Muller
    const double u1 = uniform() + 1e-12, u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint32_t state_;
};

struct SyntheticEcg {
  std::vector<int32_t> adc;       // what the ADC would read
  std::vector<size_t> r_indices;  // where the R peaks are
};

double gaussian(double t, double centre_s, double width_s) {
  const double z = (t - centre_s) / width_s;
  return std::exp(-0.5 * z * z);
}

// P-QRS-T complexes as sums of Gaussians (in the spirit of McSharry et al. 2003's dynamical
// model), RR intervals jittered by rr_jitter, plus 0.3 Hz baseline wander, 50 Hz mains and
// white noise, at gain_adc_per_mv around a mid-scale baseline as the ESP32 sees it.
SyntheticEcg synthetic_ecg(double fs_hz, double seconds, double bpm, double rr_jitter,
                           double r_mv, uint32_t seed) {
  Lcg random(seed);
  const double gain_adc_per_mv = 400.0;
  const size_t n = static_cast<size_t>(seconds * fs_hz);
  std::vector<double> beats_s;
  for (double t = 0.4; t < seconds;) {
    beats_s.push_back(t);
    t += 60.0 / bpm * (1.0 + rr_jitter * (2 * random.uniform() - 1));
  }
  SyntheticEcg ecg;
  for (size_t b = 0; b < beats_s.size(); ++b) {
    ecg.r_indices.push_back(static_cast<size_t>(std::lround(beats_s[b] * fs_hz)));
  }
  // T waves sit closer to the QRS at fast rates (QT shortens)
  const double qt_scale = std::sqrt(60.0 / bpm);
  for (size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / fs_hz;
    double mv = 0.0;
    for (size_t b = 0; b < beats_s.size(); ++b) {
      const double dt = t - beats_s[b];
      if (dt < -0.4 || dt > 0.6) continue;
      mv += 0.12 * gaussian(dt, -0.16 * qt_scale, 0.025);        // P
      mv += -0.12 * r_mv * gaussian(dt, -0.025, 0.008);          // Q
      mv += r_mv * gaussian(dt, 0.0, 0.010);                     // R
      mv += -0.25 * r_mv * gaussian(dt, 0.028, 0.010);           // S
      mv += 0.30 * gaussian(dt, 0.28 * qt_scale, 0.045);         // T
    }
    mv += 0.3 * std::sin(6.283185307179586 * 0.3 * t);           // breathing
    mv += 0.05 * std::sin(6.283185307179586 * 50.0 * t);         // mains
    mv += 0.03 * random.normal();                                // noise
    ecg.adc.push_back(2048 + static_cast<int32_t>(std::lround(mv * gain_adc_per_mv)));
  }
  return ecg;
}

struct Score {
  int true_positives = 0;
  int false_positives = 0;
  int missed = 0;
  double worst_error_s = 0.0;
};

// Match detections to the true R peaks within 75 ms (half the EC57 window is plenty for a
// display), ignoring the first 2 s the detector spends learning.
Score score(const std::vector<size_t>& truth, const std::vector<uint64_t>& found, double fs_hz) {
  Score result;
  const double learn = 2.0 * fs_hz, window = 0.075 * fs_hz;
  std::vector<bool> used(found.size(), false);
  for (size_t t = 0; t < truth.size(); ++t) {
    if (static_cast<double>(truth[t]) < learn + window) continue;
    bool matched = false;
    for (size_t f = 0; f < found.size(); ++f) {
      const double error = std::fabs(static_cast<double>(found[f]) - static_cast<double>(truth[t]));
      if (!used[f] && error <= window) {
        used[f] = true;
        matched = true;
        if (error / fs_hz > result.worst_error_s) result.worst_error_s = error / fs_hz;
        break;
      }
    }
    if (matched) ++result.true_positives; else ++result.missed;
  }
  for (size_t f = 0; f < found.size(); ++f) {
    if (!used[f] && static_cast<double>(found[f]) >= learn + window) ++result.false_positives;
  }
  return result;
}

// The heart rate the display should show at the end: from the last eight true RR intervals.
double true_rate_bpm(const std::vector<size_t>& r, double fs_hz) {
  const size_t n = r.size();
  return 60.0 * fs_hz * 8.0 / static_cast<double>(r[n - 1] - r[n - 9]);
}

}  // namespace

TEST(detector_finds_every_beat_and_the_rate_from_40_to_180_bpm) {
  const double rates[] = {40, 60, 75, 100, 130, 180};
  for (int k = 0; k < 6; ++k) {
    const double fs_hz = 250.0;
    SyntheticEcg ecg = synthetic_ecg(fs_hz, 60.0, rates[k], 0.04, 1.2, 17 + k);
    RPeakDetector detector(static_cast<float>(fs_hz));
    std::vector<uint64_t> found;
    for (size_t i = 0; i < ecg.adc.size(); ++i) {
      if (detector.add(ecg.adc[i])) found.push_back(detector.last_peak_index());
    }
    const Score s = score(ecg.r_indices, found, fs_hz);
    std::printf("  %3.0f bpm: %d found, %d missed, %d false, worst %.0f ms, HR %.1f (true %.1f)\n",
                rates[k], s.true_positives, s.missed, s.false_positives, 1000 * s.worst_error_s,
                detector.heart_rate_bpm(), true_rate_bpm(ecg.r_indices, fs_hz));
    CHECK_EQ(s.missed, 0);
    CHECK_EQ(s.false_positives, 0);
    CHECK(s.worst_error_s <= 0.040);
    CHECK_NEAR(detector.heart_rate_bpm(), true_rate_bpm(ecg.r_indices, fs_hz), 3.0);
  }
}

TEST(detector_works_at_other_sampling_rates) {
  const double rates_hz[] = {100.0, 360.0, 500.0, 1000.0};
  for (int k = 0; k < 4; ++k) {
    SyntheticEcg ecg = synthetic_ecg(rates_hz[k], 30.0, 72.0, 0.04, 1.0, 99 + k);
    RPeakDetector detector(static_cast<float>(rates_hz[k]));
    std::vector<uint64_t> found;
    for (size_t i = 0; i < ecg.adc.size(); ++i) {
      if (detector.add(ecg.adc[i])) found.push_back(detector.last_peak_index());
    }
    const Score s = score(ecg.r_indices, found, rates_hz[k]);
    CHECK_EQ(s.missed, 0);
    CHECK_EQ(s.false_positives, 0);
    CHECK_NEAR(detector.heart_rate_bpm(), true_rate_bpm(ecg.r_indices, rates_hz[k]), 3.0);
  }
}

TEST(detector_follows_a_signal_that_shrinks_to_a_quarter) {
  // an electrode that shifts: the same rhythm at a quarter of the amplitude after 20 s
  const double fs_hz = 250.0;
  SyntheticEcg big = synthetic_ecg(fs_hz, 40.0, 70.0, 0.03, 2.0, 5);
  SyntheticEcg small = synthetic_ecg(fs_hz, 40.0, 70.0, 0.03, 0.5, 5);
  RPeakDetector detector(static_cast<float>(fs_hz));
  std::vector<uint64_t> found;
  const size_t switch_at = static_cast<size_t>(20 * fs_hz);
  for (size_t i = 0; i < big.adc.size(); ++i) {
    if (detector.add(i < switch_at ? big.adc[i] : small.adc[i])) {
      found.push_back(detector.last_peak_index());
    }
  }
  const Score s = score(big.r_indices, found, fs_hz);
  // a few beats may go while the threshold comes down; the rate must be right again after
  CHECK(s.missed <= 4);
  CHECK_EQ(s.false_positives, 0);
  CHECK_NEAR(detector.heart_rate_bpm(), true_rate_bpm(big.r_indices, fs_hz), 3.0);
}

TEST(heart_rate_is_unknown_before_two_beats_and_after_a_flat_line) {
  const double fs_hz = 250.0;
  SyntheticEcg ecg = synthetic_ecg(fs_hz, 20.0, 80.0, 0.0, 1.0, 3);
  RPeakDetector detector(static_cast<float>(fs_hz));
  CHECK_EQ(detector.heart_rate_bpm(), 0.0f);
  for (size_t i = 0; i < ecg.adc.size(); ++i) detector.add(ecg.adc[i]);
  CHECK_NEAR(detector.heart_rate_bpm(), 80.0, 3.0);
  // leads off: the front end rails; 4 s later there is no rate to show
  for (int i = 0; i < 5 * 250; ++i) detector.add(4095);
  CHECK_EQ(detector.heart_rate_bpm(), 0.0f);
}
