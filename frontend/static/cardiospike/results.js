// The results page's heart-rate trend (/recordings/<id>/): one recording from its start to
// its end, from GET /api/recordings/<id>/hr-trend/ (times in seconds from the start), drawn
// by hrtrend.js as the live view draws the patient's trend. Clock times in the server's zone
// (data-time-zone) when the recording's start is known; hours from the start when the file
// gave none (the answer's started_at is null: its upload time is no clock time). Drawn once
// (a live recording's page shows the trend as it was loaded), again when its box changes
// (a window resized, the page printed). docs/upload.md, "Results".
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var canvas = $("recording-hr-trend");
  if (!canvas) { return; }
  var hrTrend = window.CardioSpike.hrTrend;
  var shown = null;  // the answer as drawn, and its clock

  // the recording's answer in the live view's shape: ISO times from its start (time 0 when
  // the start is not known)
  function asWindow(answer) {
    var startMs = answer.started_at ? Date.parse(answer.started_at) : 0;
    var at = function (seconds) { return new Date(startMs + seconds * 1000).toISOString(); };
    return {
      start: at(0),
      end: at(answer.duration_s),
      minutes: Math.round(answer.duration_s / 60),
      bin_s: answer.bin_s,
      points: answer.points.map(function (point) {
        return { time: at(point.start_s), hr_bpm: point.hr_bpm };
      }),
      gaps: answer.gaps.map(function (gap) { return { start: at(gap.start_s), end: at(gap.end_s) }; }),
    };
  }

  function draw() {
    if (shown) { hrTrend.draw(canvas, shown.body, shown.clock); }
  }

  fetch(canvas.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) { throw new Error(response.statusText); }
      return response.json();
    })
    .then(function (answer) {
      var clock = answer.started_at ? hrTrend.clock(canvas.dataset.timeZone) : hrTrend.elapsedClock();
      if (!clock.known) { $("recording-hr-trend-zone").textContent = "UTC"; }
      shown = { body: asWindow(answer), clock: clock };
      draw();
      canvas.dataset.drawn = "true";
      $("recording-hr-trend-info").textContent = answer.points.length + " minute(s) with beats" +
        (answer.points.length ? "" : ": no heart rate to draw");
    })
    .catch(function (error) {
      $("recording-hr-trend-info").textContent = "Trend unavailable: " + error.message;
    });

  if (window.ResizeObserver) {
    new ResizeObserver(draw).observe(canvas);
  } else {
    window.addEventListener("resize", draw);
  }
})();
