// The full-disclosure review page: the whole recording scrolled and zoomed on a canvas.
// Windows of signal come from /api/recordings/<id>/signal/ (min/max per pixel column when the
// window is long, null in gaps, and where the samples the device sent with an electrode off
// are: "leads_off"); jumps to the next beat of a class or alarm ask
// /api/recordings/<id>/events/, "Go to" (a time into the recording or a clock time, as the
// menu beside it says) /api/recordings/<id>/go-to/.
// Episodes, alarms, gaps and leads-off spans of the whole recording come once
// with the page (the "review-overview" JSON). The view's position is kept in the URL's hash
// (#t=<start s>&w=<width s>) so a link opens the same strip.
// The amplitude is drawn at a stated gain in mm/mV (the "Gain" menu; auto: 10 mm/mV, less only
// when the window's signal does not fit), on paper of CSS millimetres with a 1 mV calibration
// pulse, and the scale is written beside the menu ("35.4 mm/s · 10 mm/mV"): ecgpaper.js, the
// live view's scale. The width menu's "25 mm/s" gives the window that the canvas shows at
// paper speed. Until 2026-12-07 the amplitude was scaled to fit each window.
(function () {
  "use strict";

  var LABEL_COLOURS = { N: "#374151", S: "#1d4ed8", V: "#b91c1c", F: "#7e22ce", Q: "#92400e" };
  var EPISODE_COLOUR = "rgba(234, 179, 8, 0.18)";
  var GAP_COLOUR = "#e5e7eb";
  // Leads off: a blue-grey band over the samples (drawn as sent, but no ECG), as a monitor
  // greys a leads-off trace; blue rather than the gaps' grey, since there are samples there.
  var LEADS_OFF_COLOUR = "rgba(71, 85, 160, 0.22)";
  var LEADS_OFF_TEXT = "#1e293b";
  var MIN_WIDTH_S = 1;
  var MIN_LABEL_SPACING_PX = 14;  // closer beats get a coloured tick instead of a letter
  var ecgPaper = window.CardioSpike.paper;
  var TRACE_MARGIN_PX = 2 * ecgPaper.PX_PER_MM;  // kept free above and below a signal that fits
  var CALIBRATION_COLOUR = "#1d4ed8";  // as the live view's pulse

  var $ = function (id) { return document.getElementById(id); };
  var overview = JSON.parse($("review-overview").textContent);
  var canvas = $("review-canvas");
  var context = canvas.getContext("2d");
  var strip = $("overview-canvas");
  var stripContext = strip.getContext("2d");
  var base = "/api/recordings/" + overview.recording + "/";
  var maxWidthS = Math.min(overview.max_window_s, Math.max(overview.duration_s, MIN_WIDTH_S));
  // Wall-clock times in the site's zone (the server's TIME_ZONE, as its pages show them),
  // with the zone's abbreviation: on the night the clocks go back, 02:30 happens twice
  // ("02:30:00 CEST", then "02:30:00 CET"). The offsets and abbreviations come from the
  // server (clock_zones), so the page prints the header's "EST" everywhere: the browser's
  // Intl names a zone by its locale (en-GB wrote New York's winter time "GMT-5").
  // Kept to the microsecond, as the server has it: Date.parse keeps milliseconds only, and a
  // start at 19:39:59.123456 plus the 0.876544 s that "Go to" 20:40:00 answered then came to
  // 20:39:59.999544 and was cut to 20:39:59, a second before the server's time.
  var startedWholeMs = Date.parse(overview.started_at.replace(/(T\d\d:\d\d:\d\d)\.\d+/, "$1"));
  var startedFraction = /T\d\d:\d\d:\d\d(\.\d+)/.exec(overview.started_at);
  var startedUs = startedWholeMs * 1000 +
    (startedFraction ? Math.round(Number(startedFraction[1]) * 1e6) : 0);
  var clockZones = overview.clock_zones || [];
  var state = {
    startS: 0,
    widthS: Math.min(10, maxWidthS),
    channel: overview.channel,
    data: null,
    request: 0,
    // the width menu's "25 mm/s": the width follows the canvas (load)
    paperSpeed: false,
    // the event the last jump went to, until the user moves the view (forgetView)
    focus: null,
  };

  // --- Position ------------------------------------------------------------------------

  function clampView() {
    state.widthS = Math.max(MIN_WIDTH_S, Math.min(maxWidthS, state.widthS));
    var latest = Math.max(0, overview.duration_s - state.widthS);
    state.startS = Math.max(0, Math.min(latest, state.startS));
  }

  function centreOn(timeS) {
    state.startS = timeS - state.widthS / 2;
    load();
  }

  // The user moved the view: the next jump searches from its centre again (and the note on
  // where "Go to" went no longer describes the view).
  function forgetFocus() { state.focus = null; showNote(""); }

  function readHash() {
    var match = /t=([0-9.]+)/.exec(location.hash);
    var width = /w=([0-9.]+)/.exec(location.hash);
    if (match) { state.startS = Number(match[1]); }
    if (width) { state.widthS = Number(width[1]); state.paperSpeed = false; }
  }

  // --- Fetching ------------------------------------------------------------------------

  function load() {
    canvas.width = Math.max(300, canvas.parentElement.clientWidth || 1000);
    strip.width = canvas.width;
    if (state.paperSpeed) { state.widthS = canvas.width / (ecgPaper.MM_PER_S * ecgPaper.PX_PER_MM); }
    clampView();
    syncWidthSelect();  // after clamping: the width drawn, not the one asked for
    var id = ++state.request;
    var query = "start_s=" + state.startS.toFixed(4) + "&length_s=" + state.widthS +
      "&max_points=" + canvas.width + "&channel=" + state.channel;
    history.replaceState(null, "", "#t=" + state.startS.toFixed(3) + "&w=" + state.widthS);
    updateExportLink();
    fetch(base + "signal/?" + query, { credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (answer) {
        if (id !== state.request) { return; }  // a newer view was asked for meanwhile
        if (!answer.ok) { showMessage(answer.body.detail || "could not load the signal"); return; }
        showMessage("");
        state.data = answer.body;
        // a live recording grows while it is reviewed: the time axis follows the server's
        overview.duration_s = answer.body.duration_s;
        maxWidthS = Math.min(overview.max_window_s, Math.max(overview.duration_s, MIN_WIDTH_S));
        syncWidthSelect();  // "(all)" no longer holds once the recording has grown
        draw();
      })
      .catch(function (error) { showMessage(String(error)); });
  }

  function jump(kind, forward) {
    // From the event jumped to last, not from the centre: an event within half a window of
    // either end cannot be centred (clampView), so from the centre the same event came back
    // and the jumps got stuck near the start and the end.
    var fromS = state.focus ? state.focus.time_s : state.startS + state.widthS / 2;
    showNote("");
    var query = "kind=" + kind + (forward ? "&after_s=" : "&before_s=") + fromS.toFixed(4);
    fetch(base + "events/?" + query, { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (body) {
        if (!body.events || body.events.length === 0) {
          var what = kind === "alarm" || kind === "episode" ? kind : kind + " beat";
          showMessage("no " + what + (forward ? " after " : " before ") + fromS.toFixed(1) + " s");
          return;
        }
        showMessage("");
        var event = body.events[0];
        state.focus = event;
        if (kind === "episode") {
          // the view is centred on its start; where it ends may be off screen
          showNote(event.episode_kind + " episode: " + formatTime(event.time_s) + " – " +
            formatTime(event.end_s) + " (" + clockRange(event.time_s, event.end_s) + ")");
        }
        centreOn(event.time_s);
      })
      .catch(function (error) { showMessage(String(error)); });
  }

  function showMessage(text) { $("view-message").textContent = text; }

  function showNote(text) {
    $("jump-note").textContent = text;
    $("jump-note").hidden = !text;
  }

  // The PNG is the strip on screen up to PNG_MAX_S wide (the strip renderer's limit, past
  // which a page-wide picture no longer shows a beat); from a wider view it is the PNG_MAX_S
  // at the view's centre (where a jump puts its event), and the button says so with their
  // times. It gave the first 60 s of the view as the "Current strip" without a word.
  var PNG_MAX_S = 60;

  function updateExportLink() {
    var link = $("export-png");
    if (!link) { return; }  // no samples stored: the page offers no export
    var startS = state.startS, lengthS = Math.max(0.5, state.widthS);
    if (lengthS > PNG_MAX_S) {
      startS = Math.max(0, state.startS + state.widthS / 2 - PNG_MAX_S / 2);
      lengthS = PNG_MAX_S;
    }
    // the gain chosen, if one is: the PNG then draws at it (auto: the PNG chooses for its
    // own rows, and says which)
    var gain = $("gain").value;
    link.href = base + "range.png?start_s=" + startS.toFixed(3) + "&length_s=" + lengthS +
      "&channel=" + state.channel + (gain === "auto" ? "" : "&gain_mm_per_mv=" + gain);
    link.textContent = lengthS < state.widthS ?
      "PNG of the " + PNG_MAX_S + " s at the centre (" + formatTime(startS) + " – " +
        formatTime(startS + lengthS) + ")" :
      "Current strip as PNG";
  }

  // --- Drawing -------------------------------------------------------------------------

  function xOf(timeS) { return (timeS - state.startS) / state.widthS * canvas.width; }

  // The window's vertical scale: the gain chosen (or the automatic one that fits), its px per
  // mV, and the value drawn at the trace's middle: the median (the baseline), moved just
  // enough for the whole signal to fit when it can. A signal taller than the trace at the
  // gain keeps its baseline in the middle and is clipped (the scale line says so).
  function verticalScale(values, heightPx) {
    var finite = values.filter(function (v) { return v !== null; }).sort(function (a, b) {
      return a - b;
    });
    var usablePx = heightPx - 2 * TRACE_MARGIN_PX;
    var low = finite.length ? finite[0] : 0, high = finite.length ? finite[finite.length - 1] : 0;
    var median = finite.length ? finite[Math.floor(finite.length / 2)] : 0;
    var chosen = $("gain").value;
    var gain = chosen === "auto" ? ecgPaper.fittingGain(high - low, usablePx) : Number(chosen);
    var pxPerMv = gain * ecgPaper.PX_PER_MM;
    var halfMv = usablePx / 2 / pxPerMv;
    var fits = high - low <= 2 * halfMv;
    var centre = fits ? Math.min(Math.max(median, high - halfMv), low + halfMv) : median;
    return { gain: gain, pxPerMv: pxPerMv, centre: centre, fits: fits };
  }

  // ECG paper: 1 mm and 5 mm lines in amplitude (at any width: the gain is in mm/mV), from
  // the trace's middle; 0.04 s and 0.2 s lines in time when there is room. The squares are
  // square at 25 mm/s (the width menu's "25 mm/s"); the scale line says the speed drawn.
  function drawPaper(height, middleY) {
    var pxPerS = canvas.width / state.widthS;
    var pxPerMm = ecgPaper.PX_PER_MM;
    var minor = pxPerS * 0.04 >= 3;
    context.lineWidth = 1;
    [[0.04, 1, "#fbd5d5", minor], [0.2, 5, "#f29c9c", pxPerS * 0.2 >= 8]].forEach(function (step) {
      context.strokeStyle = step[2];
      context.beginPath();
      if (step[3]) {
        for (var t = Math.ceil(state.startS / step[0]) * step[0];
          t <= state.startS + state.widthS; t += step[0]) {
          context.moveTo(Math.round(xOf(t)) + 0.5, 0);
          context.lineTo(Math.round(xOf(t)) + 0.5, height);
        }
      }
      if (step[1] === 5 || minor) {
        var reach = Math.ceil(height / (step[1] * pxPerMm));
        for (var k = -reach; k <= reach; k++) {
          var y = Math.round(middleY + k * step[1] * pxPerMm) + 0.5;
          if (y < 0 || y > height) { continue; }
          context.moveTo(0, y);
          context.lineTo(canvas.width, y);
        }
      }
      context.stroke();
    });
    // time ticks at a round step, about every 100 px
    var candidates = [0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
    var tick = candidates.find(function (c) { return c * pxPerS >= 100; }) || 3600;
    context.fillStyle = "#6b7280";
    context.font = "11px sans-serif";
    context.textAlign = "center";
    for (var s = Math.ceil(state.startS / tick) * tick; s <= state.startS + state.widthS;
      s += tick) {
      // kept inside the canvas (the first and last tick sit on its edges: "0 s" read "s"),
      // on a white patch so that the grid line under the tick does not cut the text
      var label = formatTime(s), half = context.measureText(label).width / 2 + 2;
      var x = Math.min(Math.max(xOf(s), half), canvas.width - half);
      context.fillStyle = "#fff";
      context.fillRect(x - half, height - 15, 2 * half, 13);
      context.fillStyle = "#6b7280";
      context.fillText(label, x, height - 4);
    }
  }

  // The 1 mV calibration pulse at the left, at the gain drawn, with the gain beside it.
  function drawCalibration(traceBottom, gain) {
    var foot = traceBottom - 4;
    context.strokeStyle = CALIBRATION_COLOUR;
    context.lineWidth = 1.5;
    var right = ecgPaper.drawCalibration(context, 6, foot, gain);
    var text = gain + " mm/mV";
    context.font = "11px sans-serif";
    context.textAlign = "left";
    context.fillStyle = "rgba(255, 255, 255, 0.85)";
    context.fillRect(right + 3, foot - 12, context.measureText(text).width + 4, 13);
    context.fillStyle = CALIBRATION_COLOUR;
    context.fillText(text, right + 5, foot - 2);
  }

  function formatTime(seconds) {
    if (Math.round(seconds * 100) < 6000) { return (Math.round(seconds * 100) / 100) + " s"; }
    // round the total to tenths first, then split it: rounding the seconds part alone
    // turned 119.97 s into "1:60"
    var tenths = Math.round(seconds * 10);
    var h = Math.floor(tenths / 36000), m = Math.floor((tenths % 36000) / 600);
    var s = (tenths % 600) / 10;
    return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" +
      (s < 10 ? "0" : "") + s;
  }

  // "HH:MM:SS ABBR" (seconds cut, not rounded, as the server's |date filter does)
  function clockTime(seconds) {
    if (isNaN(startedUs) || clockZones.length === 0) { return "?"; }
    var zone = clockZones[0];
    clockZones.forEach(function (candidate) {
      if (candidate.from_s <= seconds) { zone = candidate; }
    });
    // whole microseconds (exact in a double: ~1.8e15 < 2^53), so that a position the server
    // computed to the microsecond is not cut to the second before by a rounding error
    var atS = Math.floor((startedUs + Math.round(seconds * 1e6)) / 1e6);
    var wall = new Date((atS + zone.offset_s) * 1000);
    var two = function (n) { return String(n).padStart(2, "0"); };
    return two(wall.getUTCHours()) + ":" + two(wall.getUTCMinutes()) + ":" +
      two(wall.getUTCSeconds()) + " " + zone.abbreviation;
  }

  // the zone once when both ends share it ("12:00:00 – 12:01:00 CET"), else at each end
  function clockRange(fromS, toS) {
    var fromClock = clockTime(fromS), toClock = clockTime(toS);
    var fromZone = fromClock.split(" ").slice(1).join(" ");
    if (fromZone && fromZone === toClock.split(" ").slice(1).join(" ")) {
      fromClock = fromClock.split(" ")[0];
    }
    return fromClock + " – " + toClock;
  }

  function draw() {
    var data = state.data;
    var height = canvas.height;
    var traceTop = 28, traceBottom = height - 20;
    context.clearRect(0, 0, canvas.width, height);
    context.fillStyle = "#fff";
    context.fillRect(0, 0, canvas.width, height);
    if (!data) { return; }
    var series = data.values ? [data.values, data.values] : [data.min, data.max];
    var scale = verticalScale(series[0].concat(series[1]), traceBottom - traceTop);
    var middleY = (traceTop + traceBottom) / 2;
    var yOf = function (mv) { return middleY - (mv - scale.centre) * scale.pxPerMv; };
    drawPaper(height, middleY);
    drawEpisodes(height);
    var pointS = data.step / data.fs_hz;
    var firstS = data.start_sample / data.fs_hz;
    // missing data: grey bands where no sample is stored
    context.fillStyle = GAP_COLOUR;
    var gapFrom = null;
    series[0].concat([0]).forEach(function (value, i) {
      if (value === null && gapFrom === null) { gapFrom = i; }
      if (value !== null && gapFrom !== null) {
        // one rectangle per run of missing points: no seams between columns
        var x0 = xOf(firstS + gapFrom * pointS);
        context.fillRect(x0, traceTop, Math.max(1, xOf(firstS + i * pointS) - x0),
          traceBottom - traceTop);
        gapFrom = null;
      }
    });
    overview.gaps_s.forEach(function (gap) {
      if (gap[1] > state.startS && gap[0] < state.startS + state.widthS) {
        context.fillStyle = "#6b7280";
        context.textAlign = "center";
        context.font = "12px sans-serif";
        var middle = (Math.max(gap[0], state.startS) + Math.min(gap[1], state.startS + state.widthS)) / 2;
        context.fillText("no data", xOf(middle), (traceTop + traceBottom) / 2);
      }
    });
    // the trace: a line through the samples, or each column's min-max bar joined up; kept
    // to the trace's rows (a signal taller than them at the gain chosen is clipped)
    context.save();
    context.beginPath();
    context.rect(0, traceTop, canvas.width, traceBottom - traceTop);
    context.clip();
    context.strokeStyle = "#111";
    context.lineWidth = 1;
    context.beginPath();
    var drawing = false;
    for (var i = 0; i < series[0].length; i++) {
      var low = series[0][i], high = series[1][i];
      if (low === null) { drawing = false; continue; }
      var x = xOf(firstS + (i + (data.values ? 0 : 0.5)) * pointS);
      if (!drawing) { context.moveTo(x, yOf(low)); drawing = true; } else { context.lineTo(x, yOf(low)); }
      if (high !== low) { context.lineTo(x, yOf(high)); }
    }
    context.stroke();
    context.restore();
    drawCalibration(traceBottom, scale.gain);
    showScale(scale);
    drawLeadsOff(traceTop, traceBottom);
    drawBeats(traceTop);
    drawAlarms(height);
    drawOverview();
    // The range lines say the window the view asked for (state), not its first sample's time:
    // the server starts the window on the sample at or before it, up to one sample period
    // earlier, and the clock line cut 20:44:54.999 (the sample before 20:44:55) to 20:44:54.
    var asked = Math.abs(state.startS - data.start_s) * data.fs_hz < 1;
    var fromS = asked ? state.startS : data.start_s;
    var endS = asked ? Math.min(data.duration_s, state.startS + state.widthS) : data.end_s;
    $("view-range").textContent = formatTime(fromS) + " – " + formatTime(endS) +
      " of " + formatTime(overview.duration_s);
    $("view-clock").textContent = clockRange(fromS, endS);
    // a window with more beats than the server sends shows only the first ones: say so
    $("view-info").textContent = data.lead + ", " + data.beats.length + " beats" +
      (data.beats_truncated ? " (the first only: zoom in to see every beat)" : "") +
      (data.step > 1 ? ", " + data.step + " samples per column" : "");
    canvas.dataset.startS = data.start_s;
    canvas.dataset.endS = data.end_s;
    if (state.focus) {
      // the event jumped to: a marker under the trace
      var fx = xOf(state.focus.time_s);
      context.fillStyle = "#2563eb";
      context.beginPath();
      context.moveTo(fx, traceBottom + 2);
      context.lineTo(fx - 6, traceBottom + 12);
      context.lineTo(fx + 6, traceBottom + 12);
      context.fill();
      canvas.dataset.focusS = state.focus.time_s;
    } else {
      delete canvas.dataset.focusS;
    }
  }

  // The scale drawn, beside the gain menu, and in the canvas' data (tests read it).
  function showScale(scale) {
    var mmPerS = canvas.width / state.widthS / ecgPaper.PX_PER_MM;
    $("paper-scale").textContent = ecgPaper.scaleText(mmPerS, scale.gain) +
      ($("gain").value === "auto" ? " (auto)" : "") +
      (scale.fits ? "" : " · clipped: the signal is taller than the strip at this gain");
    canvas.dataset.gainMmPerMv = scale.gain;
    canvas.dataset.pxPerMv = scale.pxPerMv;
    canvas.dataset.mmPerS = mmPerS;
  }

  function drawEpisodes(height) {
    overview.episodes.forEach(function (episode) {
      if (episode.end_s < state.startS || episode.start_s > state.startS + state.widthS) { return; }
      var x0 = Math.max(0, xOf(episode.start_s));
      var x1 = Math.min(canvas.width, xOf(episode.end_s));
      context.fillStyle = EPISODE_COLOUR;
      context.fillRect(x0, 0, Math.max(2, x1 - x0), height);
      context.fillStyle = "#854d0e";
      context.textAlign = "left";
      context.font = "bold 11px sans-serif";
      context.fillText(episode.kind, x0 + 3, 11);
    });
  }

  // The window's leads-off spans (sample ranges from the server), over the trace: its samples
  // stay visible through the band, but read as "Leads off", not as ECG (a flat line there is
  // no asystole). The spans drawn are kept in the canvas' data-leads-off ("3-5,8-9", s).
  function drawLeadsOff(traceTop, traceBottom) {
    var fs = state.data.fs_hz;
    var drawn = [];
    (state.data.leads_off || []).forEach(function (span) {
      var startS = span[0] / fs, endS = span[1] / fs;
      var x0 = Math.max(0, xOf(startS)), x1 = Math.min(canvas.width, xOf(endS));
      context.fillStyle = LEADS_OFF_COLOUR;
      context.fillRect(x0, traceTop, Math.max(2, x1 - x0), traceBottom - traceTop);
      context.fillStyle = LEADS_OFF_TEXT;
      context.textAlign = "center";
      context.font = "bold 12px sans-serif";
      context.fillText("Leads off", (x0 + x1) / 2, traceTop + 14);
      drawn.push(startS + "-" + endS);
    });
    canvas.dataset.leadsOff = drawn.join(",");
  }

  function drawBeats(traceTop) {
    var beats = state.data.beats;
    var fs = state.data.fs_hz;
    var dense = beats.length > canvas.width / MIN_LABEL_SPACING_PX;
    context.textAlign = "center";
    context.font = "bold 11px sans-serif";
    beats.forEach(function (beat) {
      var x = xOf(beat.sample / fs);
      context.fillStyle = LABEL_COLOURS[beat.label] || "#111";
      if (dense) {
        if (beat.label !== "N") { context.fillRect(x - 0.5, traceTop - 12, 1.5, 8); }
      } else {
        context.fillText(beat.label, x, traceTop - 6);
      }
    });
  }

  // Alarm messages go on up to ALARM_LABEL_ROWS rows, each in the first row where it does not
  // overlap the one before; one that fits nowhere keeps its line but not its text (zoom in to
  // read it). Until 2026-12-07 they were all written on one row, and at a whole recording's
  // width a few alarms close together made one unreadable smudge.
  var ALARM_LABEL_ROWS = 3, ALARM_LABEL_ROW_PX = 12, ALARM_LABEL_GAP_PX = 6;

  function drawAlarms(height) {
    var rowEnds = [];
    var labels = [];
    for (var row = 0; row < ALARM_LABEL_ROWS; row++) { rowEnds.push(-Infinity); }
    context.font = "11px sans-serif";
    var shown = overview.alarms.filter(function (alarm) {
      return alarm.time_s >= state.startS && alarm.time_s <= state.startS + state.widthS;
    });
    shown.sort(function (a, b) { return a.time_s - b.time_s; });
    shown.forEach(function (alarm) {
      var x = xOf(alarm.time_s);
      context.strokeStyle = "#dc2626";
      context.lineWidth = 1.5;
      context.beginPath();
      context.moveTo(x, 14);
      context.lineTo(x, height);
      context.stroke();
      var left = x + 3, right = left + context.measureText(alarm.message).width;
      for (var row = 0; row < ALARM_LABEL_ROWS; row++) {
        if (left >= rowEnds[row] + ALARM_LABEL_GAP_PX) {
          context.fillStyle = "#dc2626";
          context.textAlign = "left";
          context.fillText(alarm.message, left, 24 + row * ALARM_LABEL_ROW_PX);
          rowEnds[row] = right;
          labels.push([Math.round(left), Math.round(right), row].join(":"));
          return;
        }
      }
    });
    // what was written where (tests/test_review_browser.py reads it)
    canvas.dataset.alarmLabels = labels.join(",");
    canvas.dataset.alarmLines = String(shown.length);
  }

  function drawOverview() {
    var width = strip.width, height = strip.height, total = overview.duration_s || 1;
    var at = function (s) { return s / total * width; };
    stripContext.clearRect(0, 0, width, height);
    stripContext.fillStyle = "#f9fafb";
    stripContext.fillRect(0, 0, width, height);
    stripContext.fillStyle = "rgba(234, 179, 8, 0.5)";
    overview.episodes.forEach(function (e) {
      stripContext.fillRect(at(e.start_s), 0, Math.max(1, at(e.end_s) - at(e.start_s)), height);
    });
    stripContext.fillStyle = "#9ca3af";
    overview.gaps_s.forEach(function (g) {
      stripContext.fillRect(at(g[0]), height / 3, Math.max(1, at(g[1]) - at(g[0])), height / 3);
    });
    stripContext.fillStyle = "rgba(71, 85, 160, 0.6)";
    (overview.leads_off_s || []).forEach(function (span) {
      stripContext.fillRect(at(span[0]), height / 3, Math.max(1, at(span[1]) - at(span[0])),
        height / 3);
    });
    stripContext.fillStyle = "#dc2626";
    overview.alarms.forEach(function (a) { stripContext.fillRect(at(a.time_s) - 1, 0, 2, height); });
    stripContext.strokeStyle = "#1d4ed8";
    stripContext.lineWidth = 2;
    stripContext.strokeRect(at(state.startS), 1, Math.max(3, at(state.widthS)), height - 2);
  }

  // --- Controls ------------------------------------------------------------------------

  function zoom(factor, aroundS) {
    forgetFocus();
    var centre = aroundS === undefined ? state.startS + state.widthS / 2 : aroundS;
    var fraction = (centre - state.startS) / state.widthS;
    state.paperSpeed = false;
    state.widthS = Math.max(MIN_WIDTH_S, Math.min(maxWidthS, state.widthS * factor));
    state.startS = centre - fraction * state.widthS;
    load();
  }

  // The width menu shows the width on screen. A width clamped to the recording (30 s chosen
  // for a 22-s recording, a link's w= past 2 h) or reached by zooming (7.5 s) is not one of
  // its choices: it then shows an extra choice with that width ("22 s"), instead of the
  // chosen one that was not drawn, or a blank.
  function syncWidthSelect() {
    var select = $("window-s");
    var shown = $("window-s-shown");
    if (state.paperSpeed) {
      if (shown) { shown.remove(); }
      select.value = "paper";
      return;
    }
    var match = Array.prototype.find.call(select.options, function (option) {
      return option !== shown && Number(option.value) === state.widthS;
    });
    if (match) {
      if (shown) { shown.remove(); }
      select.value = match.value;
      return;
    }
    if (!shown) {
      shown = document.createElement("option");
      shown.id = "window-s-shown";
      select.appendChild(shown);
    }
    shown.value = String(state.widthS);
    shown.textContent = formatTime(state.widthS) +
      (state.widthS >= overview.duration_s ? " (all)" : "");
    // in order of width among the fixed choices
    var after = Array.prototype.find.call(select.options, function (option) {
      return option !== shown && Number(option.value) > state.widthS;
    });
    select.insertBefore(shown, after || null);
    select.value = shown.value;
  }

  // "Go to" reads what was typed as the menu beside it says: a time into the recording, as
  // the page prints positions (the default: a position copied from the page goes back to
  // it), or a clock time (a diary's "chest pain at 14:30"). The server parses either
  // (go-to/?read_as=). Before 2026-12-07 it guessed from the shape: "1:00:00" went to 01:00
  // o'clock, and "6:32.6", copied from the page, was refused.
  var JUMP_PLACEHOLDERS = { elapsed: "e.g. 1:00:00, 75", clock: "HH:MM or HH:MM:SS" };

  function jumpReadAs() { return $("jump-as").value === "clock" ? "clock" : "elapsed"; }

  // After every jump the page says what it read, in both forms, so a misreading shows.
  function wentToNote(body) {
    var atS = body.time_s, halfS = (body.length_s || 0) / 2;
    var elapsed = halfS ? formatTime(atS - halfS) + " – " + formatTime(atS + halfS) :
      formatTime(atS);
    var clock = halfS ? clockRange(atS - halfS, atS + halfS) : clockTime(atS);
    if (body.read_as === "clock") {
      return "Went to clock time " + clock + " (" + elapsed + " into the recording).";
    }
    return "Went to " + elapsed + " into the recording (clock " + clock + ").";
  }

  $("jump-as").addEventListener("change", function () {
    $("jump-time").placeholder = JUMP_PLACEHOLDERS[jumpReadAs()];
    $("jump-time").focus();  // back to the box: the next thing to do is to type
  });
  $("jump-time").placeholder = JUMP_PLACEHOLDERS[jumpReadAs()];
  $("jump-go").addEventListener("click", function () {
    var text = $("jump-time").value.trim();
    if (!text) { return; }
    var query = "at=" + encodeURIComponent(text) + "&read_as=" + jumpReadAs();
    fetch(base + "go-to/?" + query, { credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (answer) {
        if (!answer.ok) {
          showNote("");
          showMessage(answer.body.detail || "cannot go there");
          return;
        }
        forgetFocus();
        showMessage("");
        // a range ("59:55 – 1:00:05", copied from the view range): that width
        if (answer.body.length_s) { state.widthS = answer.body.length_s; state.paperSpeed = false; }
        // and a clock time the clocks showed twice (put back for winter): which one this is
        showNote(wentToNote(answer.body) + (answer.body.note ? " " + answer.body.note : ""));
        centreOn(answer.body.time_s);
      })
      .catch(function (error) { showMessage(String(error)); });
  });
  $("jump-time").addEventListener("keydown", function (event) {
    if (event.key === "Enter") { $("jump-go").click(); }
  });
  // The menus give the focus back to the trace once a choice is made: left on the menu, the
  // next ← → changed the width (30 s, 1 min, 5 min) instead of scrolling.
  function focusTrace() { $("review-frame").focus({ preventScroll: true }); }

  $("window-s").addEventListener("change", function () {
    var centre = state.startS + state.widthS / 2;
    state.paperSpeed = this.value === "paper";
    if (state.paperSpeed) {
      state.widthS = canvas.width / (ecgPaper.MM_PER_S * ecgPaper.PX_PER_MM);
    } else {
      state.widthS = Number(this.value);
    }
    forgetFocus();
    centreOn(centre);
    focusTrace();
  });
  // a gain chosen redraws the window (and the PNG link draws at it)
  $("gain").addEventListener("change", function () {
    updateExportLink();
    if (state.data) { draw(); }
    focusTrace();
  });
  $("zoom-in").addEventListener("click", function () { zoom(0.5); });
  $("zoom-out").addEventListener("click", function () { zoom(2); });
  $("page-back").addEventListener("click", function () {
    forgetFocus(); state.startS -= state.widthS * 0.9; load();
  });
  $("page-forward").addEventListener("click", function () {
    forgetFocus(); state.startS += state.widthS * 0.9; load();
  });
  ["V", "S", "alarm", "episode"].forEach(function (kind) {
    $("next-" + kind).addEventListener("click", function () { jump(kind, true); });
    $("prev-" + kind).addEventListener("click", function () { jump(kind, false); });
  });
  if ($("channel")) {
    $("channel").addEventListener("change", function () {
      state.channel = Number(this.value); load(); focusTrace();
    });
  }
  // Keys move the strip wherever the focus is but in a text box (the "Go to" box keeps its
  // own ← → Home End); on a menu ↑ ↓ stay its own (choosing with the keyboard), the others
  // move the strip. With Alt, Ctrl or Meta they are the browser's (Alt+← is "back").
  function isTextBox(element) {
    if (element.isContentEditable || element.tagName === "TEXTAREA") { return true; }
    return element.tagName === "INPUT" &&
      !/^(button|submit|reset|checkbox|radio|range|color|file|image)$/.test(element.type);
  }

  function moveTo(startS) { forgetFocus(); state.startS = startS; load(); }

  var KEYS = {
    ArrowRight: function () { $("page-forward").click(); },
    ArrowLeft: function () { $("page-back").click(); },
    PageDown: function () { moveTo(state.startS + state.widthS); },  // one screen
    PageUp: function () { moveTo(state.startS - state.widthS); },
    Home: function () { moveTo(0); },  // the start of the recording
    End: function () { moveTo(overview.duration_s); },  // its end (clampView)
    "+": function () { zoom(0.5); },
    "-": function () { zoom(2); },
  };

  document.addEventListener("keydown", function (event) {
    var action = KEYS[event.key];
    if (!action || event.altKey || event.ctrlKey || event.metaKey) { return; }
    if (isTextBox(event.target)) { return; }
    event.preventDefault();  // not the menu's choice, nor the page's scrolling
    action();
  });

  // drag to scroll: the view follows the pointer, a new window is asked for on release
  var drag = null;
  canvas.addEventListener("mousedown", function (event) {
    drag = { x: event.clientX, startS: state.startS };
  });
  window.addEventListener("mousemove", function (event) {
    if (!drag) { return; }
    state.startS = drag.startS - (event.clientX - drag.x) / canvas.width * state.widthS;
    clampView();
    if (state.data) { draw(); }
  });
  window.addEventListener("mouseup", function () {
    if (!drag) { return; }
    if (state.startS !== drag.startS) { forgetFocus(); }  // a click alone moves nothing
    drag = null;
    load();
  });
  canvas.addEventListener("wheel", function (event) {
    event.preventDefault();
    var rect = canvas.getBoundingClientRect();
    var aroundS = state.startS + (event.clientX - rect.left) / rect.width * state.widthS;
    zoom(event.deltaY > 0 ? 1.5 : 1 / 1.5, aroundS);
  }, { passive: false });
  strip.addEventListener("click", function (event) {
    var rect = strip.getBoundingClientRect();
    forgetFocus();
    centreOn((event.clientX - rect.left) / rect.width * overview.duration_s);
  });
  window.addEventListener("resize", function () { load(); });

  readHash();
  syncWidthSelect();
  if (overview.n_samples > 0) { load(); } else { showMessage("no samples stored yet"); }
})();
