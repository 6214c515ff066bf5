// ECG paper on screen, one scale for every page that draws it (the live view, the review
// page): 25 mm/s, a gain in mm/mV, and CSS's own millimetre (96 px to the inch), so that a
// strip on a screen shown at its nominal size measures as paper does. The PNG strips use the
// same speed and gains (monitoring/strips.py). docs/review.md, "Scale".
(function () {
  "use strict";

  var paper = {
    MM_PER_S: 25,
    // CSS px per mm: CSS defines 1 in = 96 px = 25.4 mm. The live view used 4 (5.8 % large).
    PX_PER_MM: 96 / 25.4,
    // Without a gain chosen: 10 mm/mV, a smaller step only when the signal does not fit the
    // height (as an ECG machine's automatic gain); 20 mm/mV only when chosen.
    AUTO_GAINS_MM_PER_MV: [10, 5, 2.5],
    CALIBRATION_WIDTH_S: 0.2,  // the pulse is 1 mV for 0.2 s (5 mm at 25 mm/s)
  };

  // The first automatic gain at which spanMv (the signal's lowest to highest value) fits
  // heightPx, else the smallest (the signal is then clipped).
  paper.fittingGain = function (spanMv, heightPx) {
    var gains = paper.AUTO_GAINS_MM_PER_MV;
    for (var i = 0; i < gains.length; i++) {
      if (spanMv * gains[i] * paper.PX_PER_MM <= heightPx) { return gains[i]; }
    }
    return gains[gains.length - 1];
  };

  // "25 mm/s · 10 mm/mV": the speed to a tenth when it is not a whole number (a review window
  // wider or narrower than 25 mm/s).
  paper.scaleText = function (mmPerS, gainMmPerMv) {
    var speed = Math.abs(mmPerS - Math.round(mmPerS)) < 0.05 ? String(Math.round(mmPerS)) :
      mmPerS.toFixed(1);
    return speed + " mm/s · " + gainMmPerMv + " mm/mV";
  };

  // The 1 mV calibration pulse, its foot at (x, baselineY) in CSS px: 1 mV high at the gain
  // drawn, 5 mm wide. Returns its right end.
  paper.drawCalibration = function (context, x, baselineY, gainMmPerMv) {
    var high = baselineY - gainMmPerMv * paper.PX_PER_MM;
    var width = paper.MM_PER_S * paper.CALIBRATION_WIDTH_S * paper.PX_PER_MM;
    context.beginPath();
    context.moveTo(x, baselineY);
    context.lineTo(x, high);
    context.lineTo(x + width, high);
    context.lineTo(x + width, baselineY);
    context.stroke();
    return x + width;
  };

  window.CardioSpike = window.CardioSpike || {};
  window.CardioSpike.paper = paper;
})();
