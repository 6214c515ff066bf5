// Single-patient live view, fed by /ws/patients/<id>/ (the live data contract,
// docs/dashboard.md): ECG grid paper at 25 mm/s with a selectable gain (5/10/20 mm/mV), a
// trace that sweeps left to right, beat labels above their R peaks, HR, rhythm and alarms;
// the HR trend of the last 1-24 h from /api/patients/<id>/hr-trend/; Acknowledge buttons that
// POST to /api/alarms/<id>/acknowledge/ with the CSRF token.
// Without signal (no samples for 10 s, or a status that says the recording is silent or
// closed: CardioSpike.signalLost in livesocket.js) the view says "No signal", blanks HR and
// rhythm and greys the trace, whatever alarm the banner shows; the next samples clear it.
// While the device says an electrode is off (its samples' lead_off, the status' "leads_off")
// it says "Leads off" the same way: those samples are no ECG.
// While the signal comes (leads on or off) the view shows the device's battery charge from the
// statuses ("Battery 42 %", a badge of its own at or below the BATTERY_LOW alarm's limit);
// without a signal it shows none rather than an old number (CardioSpike.showBattery).
// While the signal is live but its analysis is behind it by more than the limit (the newest
// samples against the last status' analysed end, or no status for that long:
// CardioSpike.analysisDelayS in status.js; a stopped Celery worker) the view says "Analysis
// delayed N s" and blanks HR and rhythm; the trace stays, it is current. The next status that
// is not behind brings them back.
// While the connection to the server is lost (livesocket.js notices, also a silent one) the
// view says so across its top and greys everything: nothing on it is current then, and the
// device is not to blame.
(function () {
  "use strict";

  // paper speed and CSS px per mm, at any width (ecgpaper.js, shared with the review page):
  // 25 mm/s and the gain stay true
  var ecgPaper = window.CardioSpike.paper;
  var MM_PER_S = ecgPaper.MM_PER_S;
  var PX_PER_MM = ecgPaper.PX_PER_MM;
  // The sweep is as wide as its frame, at most 1100 px (11.6 s of paper on a desktop; a
  // 390-px phone's 307-px frame holds 3.2 s): fitCanvas.
  var MAX_SWEEP_PX = 1100;
  var TRACE_HEIGHT_PX = 300;
  var GAP_S = 0.3;          // blank ahead of the write position
  // Rows the alarm table keeps (newest first; the page opens with the last 20): a tab left
  // open for days must not grow without bound.
  var MAX_ALARM_ROWS = 50;
  var ALARMS_REFRESH_MS = (window.CardioSpikeSocketTiming || {}).alarmsRefreshMs || 30000;
  // An alarm's states only go forward; a message that arrives late (the notifier read the
  // alarm before someone acknowledged it) must not bring a Acknowledge button back.
  var STATE_RANK = { raised: 0, notified: 1, acknowledged: 2, resolved: 3 };
  var LABEL_COLOURS = { N: "#1d2733", S: "#1d4ed8", V: "#c8102e", F: "#9333ea", Q: "#6b7785" };

  var $ = function (id) { return document.getElementById(id); };
  var root = $("live");
  if (!root) { return; }
  var canvas = $("live-ecg");
  var context = canvas.getContext("2d");
  var paper = document.createElement("canvas");   // the grid, drawn once per size
  // the size the trace is shown at, in CSS px, and the screen's pixels per CSS px
  var size = { width: canvas.width, height: canvas.height, ratio: 1 };
  var state = { recording: null, fs: 0, buffer: null, last: -1, beats: [], dirty: true,
    lastMessageAt: 0,
    // the server's word on the signal ("live", "leads_off", "stale", "ended", "none"; null:
    // not heard yet), when samples last came (Date.now()), how long the last chunk was, and
    // what the recording line says before its state
    signal: null, dataAt: 0, chunkS: 0, noSignal: false, recordingId: null,
    recordingText: null,
    // the device's battery charge (%; null: none reported, or no signal) and whether low
    batteryPct: null, batteryLow: false,
    // how far the analysis has got against the samples (status.js), and whether the view
    // says it is behind
    analysis: window.CardioSpike.analysisTrack(),
    analysisDelayed: false };

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // --- ECG paper and the sweeping trace -------------------------------------------------

  function drawPaper() {
    // in the canvas's own pixels (size.ratio per CSS px), so that the lines stay sharp
    paper.width = canvas.width;
    paper.height = canvas.height;
    var ctx = paper.getContext("2d");
    ctx.setTransform(size.ratio, 0, 0, size.ratio, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, size.width, size.height);
    // 1 mm minor lines, 5 mm major lines, as in analyzer.js
    for (var mm = 0; mm * PX_PER_MM <= size.width; mm++) {
      var x = Math.round(mm * PX_PER_MM);
      ctx.strokeStyle = mm % 5 === 0 ? "rgba(220, 80, 80, 0.55)" : "rgba(240, 150, 150, 0.35)";
      ctx.lineWidth = mm % 5 === 0 ? 1 : 0.5;
      ctx.beginPath(); ctx.moveTo(x + 0.5, 0); ctx.lineTo(x + 0.5, size.height); ctx.stroke();
    }
    for (var mmY = 0; mmY * PX_PER_MM <= size.height; mmY++) {
      var y = Math.round(mmY * PX_PER_MM);
      ctx.strokeStyle = mmY % 5 === 0 ? "rgba(220, 80, 80, 0.55)" : "rgba(240, 150, 150, 0.35)";
      ctx.lineWidth = mmY % 5 === 0 ? 1 : 0.5;
      ctx.beginPath(); ctx.moveTo(0, y + 0.5); ctx.lineTo(size.width, y + 0.5); ctx.stroke();
    }
  }

  function sweepSamples(fs) {
    return Math.round((size.width / (MM_PER_S * PX_PER_MM)) * fs);
  }

  // The trace is drawn at the width its frame shows (at most MAX_SWEEP_PX), PX_PER_MM at any
  // width, so a narrower screen shows a shorter sweep on the same paper: 25 mm/s and the gain
  // stay true, and the newest samples are always on the screen. (The 1100-px canvas scrolled
  // inside a phone's 322-px frame: only its first 3 s showed, the newest samples a quarter of
  // the time.) Scaling the 11 s down to the frame instead would have made the paper 1.2 px a
  // mm and a QRS 3 px wide.
  function fitCanvas() {
    var frame = canvas.parentNode;
    var width = Math.min(MAX_SWEEP_PX, Math.floor(frame.clientWidth)) || MAX_SWEEP_PX;
    var ratio = window.devicePixelRatio || 1;
    if (width === size.width && ratio === size.ratio && canvas.style.width) { return; }
    size = { width: width, height: TRACE_HEIGHT_PX, ratio: ratio };
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(TRACE_HEIGHT_PX * ratio);
    canvas.style.width = width + "px";
    canvas.style.height = TRACE_HEIGHT_PX + "px";
    $("sweep-seconds").textContent = (width / (MM_PER_S * PX_PER_MM)).toFixed(1);
    drawPaper();
    if (state.buffer) { resizeSweep(); }
    state.dirty = true;
  }

  function resizeSweep() {
    // the newest samples keep their places in time on the new, longer or shorter sweep
    var old = state.buffer, oldN = old.length, n = sweepSamples(state.fs);
    if (n === oldN) { return; }
    var buffer = new Float32Array(n).fill(NaN);
    var first = Math.max(0, state.last - Math.min(n, oldN) + 1);
    for (var sample = first; sample <= state.last; sample++) {
      buffer[sample % n] = old[sample % oldN];
    }
    state.buffer = buffer;
  }

  function resetTrace(recording, fs) {
    state.recording = recording;
    state.fs = fs;
    state.buffer = new Float32Array(sweepSamples(fs)).fill(NaN);
    state.last = -1;
    state.beats = [];
    state.dirty = true;
  }

  function addSamples(message) {
    if (state.recordingId && message.recording < state.recordingId) {
      return;  // late samples of a recording a new session replaced (ids grow): not the trace
    }
    if (message.recording !== state.recording || message.fs_hz !== state.fs || !state.buffer) {
      resetTrace(message.recording, message.fs_hz);
    }
    if (message.recording !== state.recordingId) {
      // a device that starts (or restarts) after the page opened: its hello is long gone
      state.recordingId = message.recording;
      state.recordingText = "#" + message.recording + " · " + message.fs_hz + " Hz";
    }
    var first = message.first_sample, values = message.samples_mv;
    var end = first + values.length;
    state.signal = window.CardioSpike.signalAfterSamples(state, message, end - 1 > state.last);
    state.dataAt = Date.now();
    state.chunkS = message.samples_mv.length / message.fs_hz;
    showSignal();
    window.CardioSpike.analysisSamples(state.analysis, message.recording, end, message.fs_hz);
    showAnalysis();
    var buffer = state.buffer, n = buffer.length;
    // Writing a sample twice writes the same value, so the backlog's overlap with live
    // messages is harmless; only samples older than the visible sweep are dropped.
    for (var i = 0; i < values.length; i++) {
      if (first + i > state.last - n) { buffer[(first + i) % n] = values[i]; }
    }
    if (end - 1 > state.last) {
      for (var j = Math.max(state.last + 1, end - n); j < first; j++) { buffer[j % n] = NaN; }
      state.last = end - 1;
    }
    state.dirty = true;
  }

  function clearGap(message) {
    // samples nobody stored: blank on the paper, never the previous sweep's trace
    if (message.recording !== state.recording || !state.buffer) { return; }
    var n = state.buffer.length;
    for (var i = Math.max(message.start_sample, state.last - n + 1); i < message.end_sample; i++) {
      if (i <= state.last) { state.buffer[i % n] = NaN; }
    }
    state.dirty = true;
  }

  function addBeats(message) {
    if (message.recording !== state.recording) { return; }
    // a beat comes first provisional, then again final with the same R peak (its label may
    // change): the later message wins
    var known = {};
    state.beats.forEach(function (beat) { known[beat.sample] = beat; });
    message.beats.forEach(function (beat) {
      var mark = known[beat.sample];
      if (mark) {
        mark.label = beat.label;
        mark.provisional = beat.provisional;
      } else {
        state.beats.push({ sample: beat.sample, label: beat.label, provisional: beat.provisional });
      }
    });
    // only beats still on the paper (draw() prunes too, but a hidden tab does not draw)
    var n = state.buffer ? state.buffer.length : 0;
    state.beats = state.beats.filter(function (beat) { return beat.sample > state.last - n; });
    state.dirty = true;
  }

  function draw() {
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.drawImage(paper, 0, 0);
    context.setTransform(size.ratio, 0, 0, size.ratio, 0, 0);  // the rest in CSS px
    var gain = Number($("gain").value);      // mm per mV
    var pxPerMv = gain * PX_PER_MM;
    var height = size.height, width = size.width;
    // 1 mV calibration pulse at the left edge: its height shows the chosen gain
    context.strokeStyle = "#1d4ed8";
    context.lineWidth = 1.3;
    ecgPaper.drawCalibration(context, 2, height - 12, gain);
    if (!state.buffer || state.last < 0) { return; }
    var buffer = state.buffer, n = buffer.length;
    var values = [];
    for (var k = 0; k < n; k++) { if (!isNaN(buffer[k])) { values.push(buffer[k]); } }
    if (!values.length) { return; }
    values.sort(function (a, b) { return a - b; });
    var median = values[Math.floor(values.length / 2)];   // centre on the baseline
    var cursor = state.last % n;
    var gap = Math.round(GAP_S * state.fs);
    context.strokeStyle = "#111";
    context.lineWidth = 1.3;
    context.beginPath();
    var pen = false;
    for (var i = 0; i < n; i++) {
      var ahead = (i - cursor + n) % n;
      if (isNaN(buffer[i]) || (ahead > 0 && ahead <= gap)) { pen = false; continue; }
      var x = (i / n) * width;
      var y = height / 2 - (buffer[i] - median) * pxPerMv;
      if (pen) { context.lineTo(x, y); } else { context.moveTo(x, y); pen = true; }
    }
    context.stroke();
    // beat labels over their R peaks, only for beats still on the paper
    state.beats = state.beats.filter(function (beat) { return beat.sample > state.last - n; });
    context.font = "bold 14px system-ui, sans-serif";
    context.textAlign = "center";
    state.beats.forEach(function (beat) {
      if (beat.sample > state.last) { return; }
      var x = ((beat.sample % n) / n) * width;
      context.fillStyle = LABEL_COLOURS[beat.label] || "#111";
      context.globalAlpha = beat.provisional ? 0.45 : 1.0;  // faint until confirmed
      context.fillText(beat.label, x, 16);
      context.globalAlpha = 1.0;
      context.fillRect(x - 0.5, 20, 1, 6);
    });
  }

  function frame() {
    if (state.dirty) { state.dirty = false; draw(); }
    window.requestAnimationFrame(frame);
  }

  // --- Status and alarms ------------------------------------------------------------------

  function showSignal() {
    // the no-signal state, independent of the alarm banner: a badge and a class of its own
    var lost = window.CardioSpike.signalLost(state);
    var badge = $("signal-state");
    // the charge goes with the signal (and a silence that has just begun), whatever else changed
    window.CardioSpike.showBattery($("battery-state"), state);
    badge.textContent = window.CardioSpike.signalText(state);
    if (state.recordingText !== null) {
      $("recording-info").textContent = state.recordingText + " · " +
        (state.signal === "ended" ? "closed" : window.CardioSpike.leadsOff(state) ? "leads off" :
          lost ? "no signal" : "live");
    }
    if (lost === state.noSignal) { return; }
    state.noSignal = lost;
    root.classList.toggle("no-signal", lost);
    badge.hidden = !lost;
    if (lost) {
      // the last values are the past, not vital signs; the next status sets them again
      $("hr-value").textContent = "--";
      $("hr-value").classList.remove("out-of-limits");
      $("rhythm-value").textContent = "—";
    } else {
      window.CardioSpike.analysisSignalBack(state.analysis);
    }
  }

  function showAnalysis() {
    // the analysis-delayed state: only while the signal is live ("No signal" and "Leads off"
    // say more, and no analysis is due without samples)
    var lagS = state.noSignal ? 0 : window.CardioSpike.analysisDelayS(state.analysis, state.chunkS);
    var delayed = lagS > 0;
    var badge = $("analysis-state");
    if (delayed) {
      badge.textContent = window.CardioSpike.analysisText(lagS) +
        " · heart rate, rhythm and their alarms are not current";
    }
    if (delayed === state.analysisDelayed) { return; }
    state.analysisDelayed = delayed;
    root.classList.toggle("analysis-delayed", delayed);
    badge.hidden = !delayed;
    if (delayed) {
      // the last values are the past, not vital signs; the next status in time sets them again
      $("hr-value").textContent = "--";
      $("hr-value").classList.remove("out-of-limits");
      $("rhythm-value").textContent = "—";
    }
  }

  function showStatus(message) {
    if (message.recording && state.recordingId && message.recording < state.recordingId) {
      // the last round of a recording a new session replaced (ids grow): it says nothing
      // about the signal or the vital signs now, only the alarm is the patient's
      showBanner(message.alarm);
      return;
    }
    window.CardioSpike.batteryFromStatus(state, message);  // shown by showSignal
    if ("signal" in message) {
      state.signal = message.signal;
      // a live signal's status says how old its newest chunk is: a page that just opened
      // (its backlog's samples are old) counts the silence from there
      if (message.signal === "live" || message.signal === "leads_off") {
        state.dataAt = Date.now() - (message.signal_age_s || 0) * 1000;
      }
      showSignal();
    }
    window.CardioSpike.analysisStatus(state.analysis, message);
    showAnalysis();
    // without a signal, or with the analysis behind it, the numbers are the past, not vital
    // signs (showSignal and showAnalysis blanked them)
    var past = state.noSignal || state.analysisDelayed;
    var known = !past && message.hr_bpm !== null && message.hr_bpm !== undefined;
    var hr = $("hr-value");
    hr.textContent = known ? String(Math.round(message.hr_bpm)) : "--";
    // outside the patient's limits the number turns red, whether or not an alarm is open yet
    // (the HR alarms wait for 10 s of sustained rate)
    hr.classList.toggle("out-of-limits", known &&
      (message.hr_bpm < Number(root.dataset.hrLow) || message.hr_bpm > Number(root.dataset.hrHigh)));
    $("rhythm-value").textContent = (!past && message.rhythm) || "—";
    showBanner(message.alarm);
  }

  function showBanner(alarm) {
    // alarm: the patient's top open alarm (status "alarm", an alarm message's "top_alarm")
    var banner = $("alarm-banner");
    banner.className = "mid" + (alarm ? " " + alarm.priority : "");
    banner.textContent = alarm ? alarm.message : "none";
    // a critical alarm that resolved before anyone acknowledged it latches: it stays
    if (alarm && alarm.state === "resolved") { banner.textContent += " (over, not acknowledged)"; }
    if (alarm && alarm.acknowledged_by) {
      banner.textContent += " (acknowledged by " + alarm.acknowledged_by + ")";
      if (alarm.unacknowledged > 0) {  // a lower one nobody has acknowledged yet
        banner.textContent += " · " + alarm.unacknowledged + " more to acknowledge";
      }
    }
  }

  // Times in the server's zone (TIME_ZONE, data-time-zone), which the table's heading names:
  // the patient page, the review and the server-written rows use it, so an alarm's time here
  // is the one to look up there, whatever zone the browser is set to.
  var timeFormat = null, dateFormat = null;
  try {
    timeFormat = new Intl.DateTimeFormat("en-GB", { timeZone: root.dataset.timeZone || "UTC",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
    dateFormat = new Intl.DateTimeFormat("en-CA", { timeZone: root.dataset.timeZone || "UTC",
      year: "numeric", month: "2-digit", day: "2-digit" });  // en-CA: YYYY-MM-DD
  } catch (error) { timeFormat = null; }  // a zone this browser does not know

  function formatTime(iso) {
    // the date too when not today (in that zone)
    if (!iso) { return ""; }
    var date = new Date(iso);
    if (isNaN(date)) { return iso; }
    if (!timeFormat) { return iso; }  // ISO 8601 with its offset: unambiguous
    var time = timeFormat.format(date);
    var day = dateFormat.format(date);
    return day === dateFormat.format(new Date()) ? time : day + " " + time;
  }

  // The rows the server wrote, formatted as the rows added live are (the date when not today).
  Array.prototype.forEach.call($("alarm-table").querySelectorAll("time[datetime]"),
    function (element) { element.textContent = formatTime(element.getAttribute("datetime")); });

  function trimAlarmRows(tbody) {
    // the oldest rows go first, but never one still to be acknowledged (an alarm the station
    // shows must keep its button)
    var rows = Array.prototype.slice.call(tbody.children);
    for (var i = rows.length - 1; i >= 0 && tbody.children.length > MAX_ALARM_ROWS; i--) {
      if (!rows[i].querySelector("button.ack")) { tbody.removeChild(rows[i]); }
    }
  }

  function showAlarm(alarm) {
    var tbody = $("alarm-table").querySelector("tbody");
    var row = $("alarm-" + alarm.id);
    if (row && ((STATE_RANK[alarm.state] || 0) < (STATE_RANK[row.dataset.state] || 0) ||
        (row.dataset.acked && !alarm.acknowledged_at))) {
      return;  // older news than the row shows (an acknowledgment is never taken back)
    }
    if (!row) {
      row = document.createElement("tr");
      row.id = "alarm-" + alarm.id;
      row.dataset.alarm = alarm.id;
      row.innerHTML = '<td class="raised"></td><td class="priority"></td><td class="message"></td>' +
        '<td class="state"></td><td class="acked"></td><td class="ecg"></td>' +
        '<td class="action"></td>';
      // newest first, by id (raised in that order): a reconnect's backlog may bring alarms
      // older than rows already shown
      var after = Array.prototype.find.call(tbody.children, function (other) {
        return Number(other.dataset.alarm) < alarm.id;
      });
      tbody.insertBefore(row, after || null);
      $("no-alarms").hidden = true;
    }
    row.dataset.state = alarm.state;
    if (alarm.acknowledged_at) { row.dataset.acked = "1"; }
    row.className = "alarm-row " + alarm.priority;
    var cells = row.children;
    cells[0].textContent = formatTime(alarm.raised_at);
    cells[1].textContent = alarm.priority;
    cells[2].textContent = alarm.message;
    cells[3].textContent = alarm.state;
    cells[4].textContent = alarm.acknowledged_at
      ? (alarm.acknowledged_by || "?") + " at " + formatTime(alarm.acknowledged_at) : "";
    // the ECG at the event, as the server writes its rows (the socket's alarm messages and
    // the API both carry review_path; null: no recording, no link)
    cells[5].innerHTML = "";
    if (alarm.review_path) {
      var link = document.createElement("a");
      link.className = "ecg-link";
      link.href = alarm.review_path;
      link.textContent = "ECG";
      cells[5].appendChild(link);
    }
    cells[6].innerHTML = "";
    if (!alarm.acknowledged_at) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "ack";
      button.dataset.alarm = alarm.id;
      button.textContent = "Acknowledge";
      cells[6].appendChild(button);
    }
    trimAlarmRows(tbody);  // when filled: a row to acknowledge stays
  }

  function keepFocus(hadFocus) {
    // The acknowledged row loses its button (here, or first by the socket's alarm message):
    // a keyboard user would be left on the page's top. Focus goes to the next alarm still to
    // be acknowledged, else to the table.
    if (!hadFocus || (document.activeElement && document.activeElement !== document.body)) {
      return;
    }
    var next = $("alarm-table").querySelector("button.ack:not([disabled])");
    (next || $("alarm-table")).focus();
  }

  function acknowledge(alarmId, button) {
    var hadFocus = document.activeElement === button;
    button.disabled = true;
    $("ack-error").textContent = "";
    fetch("/api/alarms/" + encodeURIComponent(alarmId) + "/acknowledge/", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "Accept": "application/json" },
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (answer) {
      if (!answer.ok) { throw new Error(answer.body.detail || "refused"); }
      showAlarm(answer.body);
      keepFocus(hadFocus);
    }).catch(function (error) {
      button.disabled = false;
      $("ack-error").textContent = "Could not acknowledge: " + error.message;
    });
  }

  $("alarm-table").addEventListener("click", function (event) {
    var button = event.target.closest("button.ack");
    if (button) { acknowledge(button.dataset.alarm, button); }
  });

  // --- HR trend ----------------------------------------------------------------------------
  // The last 1, 4, 12 or 24 h (the Range menu; 1 h when the page opens: the page remembers
  // none of its choices) from /api/patients/<id>/hr-trend/?minutes=, one point a minute, on a
  // clock-time axis in the page's zone (data-time-zone, as the alarm list), drawn by
  // hrtrend.js (the results page draws a recording's trend with the same code).
  // docs/dashboard.md, "HR trend".

  var hrTrend = window.CardioSpike.hrTrend;
  var lastTrend = null;  // the last answer, redrawn when the window is resized
  var trendRequest = 0;  // the newest request: an older answer that comes later is dropped
  var trendClock = hrTrend.clock(root.dataset.timeZone);
  if (!trendClock.known) {  // a zone this browser does not know: UTC, and the page says so
    $("hr-trend-zone").textContent = "UTC";
  }
  var hhmm = trendClock.label;

  function drawTrend(body) {
    lastTrend = body;
    return hrTrend.draw($("hr-trend"), body, trendClock);
  }

  function showTrendInfo(body, above) {
    var last = body.points[body.points.length - 1];
    var binMs = body.bin_s * 1000;
    var text = body.points.length + " minute(s) with beats" +
      (last ? "; latest " + Math.round(last.hr_bpm) + " bpm at " + hhmm(Date.parse(last.time)) +
        " (60 / median RR)" : "");
    if (above.length) {
      text += "; above the axis: " + above.map(function (point) {
          return Math.round(point.bpm) + " bpm at " + hhmm(point.ms - binMs / 2);
        }).join(", ");
    }
    $("hr-trend-info").textContent = text;
  }

  function loadTrend() {
    var trend = $("hr-trend"), request = ++trendRequest;
    var minutes = Number($("trend-range").value) || 60;
    fetch(trend.dataset.url + "?minutes=" + minutes,
      { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error(response.statusText); }
        return response.json();
      })
      .then(function (body) {
        if (request !== trendRequest) { return; }  // the range changed meanwhile
        showTrendInfo(body, drawTrend(body));
      })
      .catch(function (error) {
        if (request !== trendRequest) { return; }
        $("hr-trend-info").textContent = "Trend unavailable: " + error.message;
      });
  }

  $("trend-range").addEventListener("change", function () {
    $("hr-trend-info").textContent = "loading…";
    loadTrend();
  });

  // The socket's alarm messages can be lost on the way (a channel that is full drops them
  // without a word, and a failed publish is not sent again): the last 20 alarms are read again
  // every ALARMS_REFRESH_MS, so a lost one shows within that time. Older news than a row shows
  // is ignored (showAlarm), so a reply that crosses a live message changes nothing.
  function loadAlarms() {
    // the last 20, and every one still waiting for someone (open, or latched), however old
    ["limit=20", "state=waiting&limit=100"].forEach(function (query) {
      fetch("/api/alarms/?" + query + "&patient=" + encodeURIComponent(root.dataset.patient),
        { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error(response.statusText); }
          return response.json();
        })
        .then(function (body) { body.results.forEach(showAlarm); })
        .catch(function () { /* the connection line says when the server is away */ });
    });
  }

  // --- The websocket ------------------------------------------------------------------------

  function handle(message) {
    state.lastMessageAt = Date.now();
    if (message.type === "hello") {
      var recording = message.recording;
      state.recordingId = recording ? recording.id : null;
      state.recordingText = recording
        ? "#" + recording.id + " · " + recording.fs_hz + " Hz · lead " + recording.lead : null;
      if (!recording) {
        $("recording-info").textContent = "no live recording";
        state.signal = "none";
      } else if (!recording.live) {
        state.signal = "ended";  // history, not a vital sign
      }  // a live one: the status after the backlog says whether it still brings a signal
      showSignal();
    } else if (message.type === "samples") {
      addSamples(message);
    } else if (message.type === "beats") {
      addBeats(message);
    } else if (message.type === "gap") {
      clearGap(message);
    } else if (message.type === "status") {
      showStatus(message);
    } else if (message.type === "alarm") {
      showAlarm(message.alarm);
      // what the banner shows now (the backlog's alarm messages have none: a status follows)
      if ("top_alarm" in message) { showBanner(message.top_alarm); }
    }
  }

  function showConnection(stateName, waitMs) {
    var described = window.CardioSpike.describeConnection(stateName, waitMs);
    var line = $("live-connection");
    line.textContent = described.text;  // the socket; the signal has its own badge
    line.className = described.error ? "small error" : "muted";
    root.classList.toggle("connection-lost", !described.current);
    window.CardioSpike.showConnectionBanner($("connection-lost"), described);
  }

  function socketUrl() {
    // After a drop, ask for the seconds missed (plus a margin) so the trace has no hole.
    var sinceS = 10;
    if (state.lastMessageAt) {
      sinceS = Math.min(300, Math.ceil((Date.now() - state.lastMessageAt) / 1000) + 5);
    }
    return root.dataset.socket + "?since_s=" + sinceS;
  }

  $("gain").addEventListener("change", function () { state.dirty = true; });
  fitCanvas();  // draws the paper
  draw();
  // a window resized or a phone turned: the sweep follows its frame's width
  if (window.ResizeObserver) {
    new ResizeObserver(fitCanvas).observe(canvas.parentNode);
  } else {
    window.addEventListener("resize", fitCanvas);
  }
  window.requestAnimationFrame(frame);
  loadTrend();
  // redrawn at its new size whenever its box changes: a window resized or turned, or a
  // scroll bar that came with the page's content (the window's resize misses that one)
  var redrawTrend = function () { if (lastTrend) { drawTrend(lastTrend); } };
  if (window.ResizeObserver) {
    new ResizeObserver(redrawTrend).observe($("hr-trend"));
  } else {
    window.addEventListener("resize", redrawTrend);
  }
  setInterval(loadTrend, 30000);  // a new minute's point shows within half a minute
  setInterval(loadAlarms, ALARMS_REFRESH_MS);
  // a device that stops sends nothing more, a worker that stops no status: look every second
  setInterval(function () { showSignal(); showAnalysis(); }, 1000);
  window.CardioSpike.liveSocket({ url: socketUrl, onMessage: handle, onState: showConnection });
})();
