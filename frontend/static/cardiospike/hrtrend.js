// The heart-rate trend chart, one drawing for every page that shows one: the live view (the
// patient's last 1-24 h, live.js) and the results page (one recording from its start to its
// end, results.js). docs/dashboard.md, "HR trend".
//
// CardioSpike.hrTrend.draw(canvas, body, clock) draws an answer shaped as
// GET /api/patients/<id>/hr-trend/'s: {start, end, minutes, bin_s, points: [{time, hr_bpm}],
// gaps: [{start, end}], hr_low_limit_bpm, hr_high_limit_bpm} (ISO times; the limits are left
// out when null), one point a minute, on a time axis that the clock labels:
// CardioSpike.hrTrend.clock(zone) gives clock times (hh:mm) in that zone,
// CardioSpike.hrTrend.elapsedClock() hours and minutes from time 0 (a recording whose start
// is not known, drawn from 1970-01-01T00:00Z). The line breaks where the data does: between
// two points more than a bin apart, and across every gap the answer lists (a minute or more
// with no RR interval: the device silent, its leads off); the gaps are shaded grey. The axis
// reaches 200 bpm, 250 or 300 when a point is above 200; a point above 300 (an artefact, most
// likely) is drawn as a red triangle at the top, its value in the canvas's title.
(function () {
  "use strict";

  var TREND_HEIGHT_PX = 160;  // as dashboard.css and upload.css set it
  var TREND_AXIS_TOPS_BPM = [200, 250, 300];
  // clock ticks (minutes) from the finest up; the finest that leaves 90 px between labels
  var TREND_TICK_STEPS_MIN = [5, 10, 15, 30, 60, 120, 180, 240, 360, 480, 720];
  var TREND_TICK_SPACING_PX = 90;

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // Clock times in a zone. Intl gives a time's wall clock there; the zone's offset is worked
  // out from it once per quarter hour (every zone's offset is a whole number of quarter
  // hours), so that a 24-h axis across a daylight-saving change is right on both sides.
  // known: false for a zone this browser does not know (UTC is used, and the page says so).
  function clock(timeZone) {
    var format = null;
    try {
      format = new Intl.DateTimeFormat("en-GB", { timeZone: timeZone || "UTC",
        year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
        hourCycle: "h23" });
    } catch (error) {
      format = null;
    }
    var zoneOffsets = {};
    function zoneOffsetMin(ms) {
      if (!format) { return 0; }
      var quarter = Math.floor(ms / 900000);
      if (!(quarter in zoneOffsets)) {
        var parts = {};
        format.formatToParts(new Date(quarter * 900000)).forEach(function (part) {
          parts[part.type] = Number(part.value);
        });
        var wall = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour % 24, parts.minute);
        zoneOffsets[quarter] = Math.round((wall - quarter * 900000) / 60000);
      }
      return zoneOffsets[quarter];
    }
    // minutes since midnight on the clock, whole minutes
    function minutes(ms) {
      var total = Math.floor(ms / 60000) + zoneOffsetMin(ms);
      return ((total % 1440) + 1440) % 1440;
    }
    return {
      known: format !== null,
      minutes: minutes,
      label: function (ms) {
        var shown = minutes(ms);
        return pad(Math.floor(shown / 60)) + ":" + pad(shown % 60);
      },
    };
  }

  // Hours and minutes since time 0 ("0:00", "1:30", "26:00"), not wrapped at a day.
  function elapsedClock() {
    function minutes(ms) { return Math.floor(ms / 60000); }
    return {
      known: true,
      minutes: minutes,
      label: function (ms) {
        var shown = minutes(ms);
        return Math.floor(shown / 60) + ":" + pad(shown % 60);
      },
    };
  }

  // the whole minutes from startMs to endMs that are round times on the clock, step apart
  function clockTicks(timeClock, startMs, endMs, plotWidthPx) {
    var spanMin = (endMs - startMs) / 60000;
    var most = Math.max(1, Math.floor(plotWidthPx / TREND_TICK_SPACING_PX));
    var step = TREND_TICK_STEPS_MIN[TREND_TICK_STEPS_MIN.length - 1];
    for (var i = 0; i < TREND_TICK_STEPS_MIN.length; i++) {
      if (spanMin / TREND_TICK_STEPS_MIN[i] <= most) { step = TREND_TICK_STEPS_MIN[i]; break; }
    }
    var ticks = [];
    for (var minute = Math.ceil(startMs / 60000); minute * 60000 <= endMs; minute++) {
      if (timeClock.minutes(minute * 60000) % step === 0) { ticks.push(minute * 60000); }
    }
    return ticks;
  }

  // The points as runs to draw as one line each: a new run after a missing bin, or where a
  // gap fills half or more of the time between two points (their bins' middles). Not any
  // overlap: a minute with beats only in its last seconds (the first after an outage) has its
  // middle inside the gap, and it is still the same stretch of data as the next minute.
  function trendRuns(body) {
    var binMs = body.bin_s * 1000;
    var gaps = (body.gaps || []).map(function (gap) {
      return [Date.parse(gap.start), Date.parse(gap.end)];
    });
    var runs = [], run = null, previousMs = null;
    body.points.forEach(function (point) {
      var ms = Date.parse(point.time) + binMs / 2;
      var apart = previousMs !== null && (ms - previousMs > binMs * 1.5 ||
        gaps.some(function (gap) {
          return Math.min(gap[1], ms) - Math.max(gap[0], previousMs) >= binMs / 2;
        }));
      if (!run || apart) { run = []; runs.push(run); }
      run.push({ ms: ms, bpm: point.hr_bpm });
      previousMs = ms;
    });
    return runs;
  }

  // Draws body on canvas; returns the points above the axis ({ms, bpm}).
  function draw(trend, body, timeClock) {
    var ctx = trend.getContext("2d");
    // Drawn at the size it is shown (the card's width, at most 1100 px), in CSS pixels times
    // the screen's pixel ratio. A fixed 1100-px drawing scaled down to a 390-px phone shrank
    // its 11-px labels to 3 px and the chart to 41 px high.
    var width = Math.round(trend.clientWidth) || 1100, height = TREND_HEIGHT_PX;
    var ratio = window.devicePixelRatio || 1;
    trend.width = Math.round(width * ratio);
    trend.height = Math.round(height * ratio);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    var left = 36, bottom = 18, right = 4;
    var plotBottom = height - bottom;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    var maxBpm = body.points.reduce(function (most, point) { return Math.max(most, point.hr_bpm); }, 0);
    var top = TREND_AXIS_TOPS_BPM.find(function (bpm) { return maxBpm <= bpm; }) ||
      TREND_AXIS_TOPS_BPM[TREND_AXIS_TOPS_BPM.length - 1];
    var low = 0, headroom = 8;  // headroom: the top label was cut at the top
    var yOf = function (bpm) {
      return headroom + (plotBottom - headroom) * (1 - (Math.min(top, bpm) - low) / (top - low));
    };
    // the server's window, so that its clock and the browser's need not agree (an elapsed
    // axis starts at time 0, which is a time too)
    var endMs = Date.parse(body.end);
    if (isNaN(endMs)) { endMs = Date.now(); }
    var startMs = Date.parse(body.start);
    if (isNaN(startMs)) { startMs = endMs - body.minutes * 60000; }
    var xOf = function (ms) {
      return left + ((ms - startMs) / Math.max(1, endMs - startMs)) * (width - left - right);
    };
    ctx.lineWidth = 1;  // the trace's width below stayed for the next redraw's grid
    // no HR data: shaded, and said where there is room
    ctx.font = "11px system-ui, sans-serif";
    (body.gaps || []).forEach(function (gap) {
      var x0 = xOf(Date.parse(gap.start)), x1 = xOf(Date.parse(gap.end));
      ctx.fillStyle = "#eceff3";
      ctx.fillRect(x0, headroom, x1 - x0, plotBottom - headroom);
      if (x1 - x0 > 80) {
        ctx.fillStyle = "#8a94a3";
        ctx.fillText("no HR data", (x0 + x1) / 2 - 28, plotBottom - 6);
      }
    });
    ctx.fillStyle = "#6b7785";
    for (var bpm = 0; bpm <= top; bpm += 50) {
      ctx.fillText(String(bpm), 4, yOf(bpm) + 4);
      ctx.strokeStyle = "#e3e6ea";
      ctx.beginPath(); ctx.moveTo(left, yOf(bpm)); ctx.lineTo(width - right, yOf(bpm)); ctx.stroke();
    }
    // the time axis: clock times, a light line up from each
    var ticks = clockTicks(timeClock, startMs, endMs, width - left - right);
    var labels = [];
    ticks.forEach(function (ms) {
      var x = xOf(ms), label = timeClock.label(ms), labelWidth = ctx.measureText(label).width;
      ctx.strokeStyle = "#eef0f3";
      ctx.beginPath(); ctx.moveTo(x, headroom); ctx.lineTo(x, plotBottom + 3); ctx.stroke();
      ctx.fillStyle = "#6b7785";
      ctx.fillText(label, Math.max(left, Math.min(width - right - labelWidth, x - labelWidth / 2)),
        height - 4);
      labels.push(label);
    });
    // the patient's limits as dashed lines, when the answer has them
    ctx.setLineDash([4, 4]);
    ctx.strokeStyle = "#c8102e";
    [body.hr_low_limit_bpm, body.hr_high_limit_bpm].forEach(function (limit) {
      if (limit === null || limit === undefined) { return; }
      ctx.beginPath(); ctx.moveTo(left, yOf(limit)); ctx.lineTo(width - right, yOf(limit)); ctx.stroke();
    });
    ctx.setLineDash([]);
    ctx.strokeStyle = "#0f7b3b";
    ctx.fillStyle = "#0f7b3b";
    // a phone's narrow chart packs a minute into 5 px: a thicker line stays visible
    ctx.lineWidth = width < 600 ? 2 : 1.5;
    var runs = trendRuns(body), above = [];
    runs.forEach(function (run) {
      ctx.beginPath();
      run.forEach(function (point, index) {
        if (index === 0) { ctx.moveTo(xOf(point.ms), yOf(point.bpm)); } else { ctx.lineTo(xOf(point.ms), yOf(point.bpm)); }
      });
      ctx.stroke();
      run.forEach(function (point) {
        ctx.fillRect(xOf(point.ms) - 1.5, yOf(point.bpm) - 1.5, 3, 3);
        if (point.bpm > top) { above.push(point); }
      });
    });
    // above the axis: a red triangle at the top, pointing up
    ctx.fillStyle = "#c8102e";
    above.forEach(function (point) {
      var x = xOf(point.ms);
      ctx.beginPath(); ctx.moveTo(x, 1); ctx.lineTo(x - 4, headroom + 1); ctx.lineTo(x + 4, headroom + 1);
      ctx.closePath(); ctx.fill();
    });
    trend.title = above.length ? "Above " + top + " bpm: " + above.map(function (point) {
      return Math.round(point.bpm) + " bpm at " + timeClock.label(point.ms - body.bin_s * 500);
    }).join(", ") : "";
    // what the tests (and a curious reader of the DOM) can check
    trend.dataset.minutes = body.minutes;
    trend.dataset.segments = runs.length;
    trend.dataset.ticks = labels.join(" ");
    trend.dataset.axisTopBpm = top;
    trend.dataset.aboveAxis = above.length;
    return above;
  }

  window.CardioSpike = window.CardioSpike || {};
  window.CardioSpike.hrTrend = {
    clock: clock,
    elapsedClock: elapsedClock,
    runs: trendRuns,
    draw: draw,
  };
})();
