// Central station: one tile per visible admitted patient, fed by /ws/station/ (the live data
// contract, docs/dashboard.md). Each tile sweeps a decimated waveform (~50 Hz) left to right
// like a bedside monitor, shows the heart rate, the rhythm and the worst open alarm's colour.
// The socket (livesocket.js) notices a dead connection, also a silent one, and reconnects within
// 5 s, asking for the seconds it missed (since_s) so the tiles' traces have no hole; meanwhile
// the station says across its top that nothing on it is current. A "hello" lists every
// patient the station may show: a tile not in it (unassigned, discharged) is removed.
// A tile whose patient brings no signal (no wave for 10 s, or a status that says the recording
// is silent or closed: CardioSpike.signalLost) says "No signal", blanks its heart rate and
// rhythm and greys its trace, whatever alarm is on top; the next wave clears it. While the
// device says an electrode is off (the wave's lead_off, the status' "leads_off") the tile says
// "Leads off" the same way.
// While the signal comes (leads on or off) the tile shows the device's battery charge from the
// statuses ("Battery 42 %", a badge of its own at or below the BATTERY_LOW alarm's limit);
// without a signal it shows none rather than an old number (CardioSpike.showBattery).
// A tile whose signal is live but whose analysis is behind it by more than the limit (the
// newest wave's samples against the last status' analysed end, or no status for that long:
// CardioSpike.analysisDelayS in status.js; a stopped Celery worker) says "Analysis delayed N s"
// and blanks its heart rate and rhythm, which are the past then; its trace stays, it is current.
// The next status that is not behind brings them back.
(function () {
  "use strict";

  var SWEEP_S = 6;          // seconds of signal across a tile
  var GAP_S = 0.25;         // blank ahead of the write position, so the sweep is visible
  var MV_RANGE = 4;         // the tile's height spans 4 mV
  var root = document.getElementById("station");
  var connection = document.getElementById("station-connection");
  if (!root || !window.WebSocket || !window.CardioSpike) { return; }
  var tiles = {};           // patient id -> tile state
  var dirty = false;
  var lastMessageAt = 0;    // Date.now() of the last message, for since_s on reconnect

  // A tile's canvas is as wide as its tile (CSS), not its 300 drawing pixels: its drawing
  // buffer follows the size shown times the screen's pixel ratio, so that the trace is sharp
  // and its line as thick across as up (a 300x70 buffer stretched to a 420-px tile on a
  // ratio-2 screen drew a blurred line 2.8 px wide and 2 px high).
  function fitCanvas(canvas) {
    var ratio = window.devicePixelRatio || 1;
    var width = Math.round((canvas.clientWidth || 300) * ratio);
    var height = Math.round((canvas.clientHeight || 70) * ratio);
    if (canvas.width !== width) { canvas.width = width; }
    if (canvas.height !== height) { canvas.height = height; }
    return ratio;
  }

  // Refit whenever a tile's size changes (the window, the grid's columns, a scroll bar that
  // comes once the page is full); a new ratio (a zoom, another screen) comes with a resize.
  var resized = window.ResizeObserver ? new ResizeObserver(function (entries) {
    entries.forEach(function (entry) { fitCanvas(entry.target); });
    dirty = true;
  }) : null;

  function tileState(element) {
    var canvas = element.querySelector("canvas.wave");
    fitCanvas(canvas);
    if (resized) { resized.observe(canvas); }
    return { element: element, canvas: canvas,
      fs: 0, recording: null, buffer: null, last: -1,
      // the newest recording heard of (hello, status or wave): an older one's news is late
      recordingId: 0,
      // the server's word on the signal ("live", "leads_off", "stale", "ended", "none"; null:
      // not heard yet), when data last came (Date.now()) and how long the last chunk was
      signal: null, dataAt: 0, chunkS: 0, noSignal: false,
      // the device's battery charge (%; null: none reported, or no signal) and whether low
      batteryPct: null, batteryLow: false,
      // how far the analysis has got against the samples (status.js), and whether the tile
      // says it is behind
      analysis: window.CardioSpike.analysisTrack(), analysisDelayed: false };
  }

  Array.prototype.forEach.call(root.querySelectorAll(".tile"), function (element) {
    tiles[element.dataset.patient] = tileState(element);
  });

  function wardSection(ward) {
    var sections = root.querySelectorAll("section.ward");
    for (var i = 0; i < sections.length; i++) {
      if (sections[i].dataset.ward === ward) { return sections[i].querySelector(".tiles"); }
    }
    var section = document.createElement("section");
    section.className = "ward";
    section.dataset.ward = ward;
    var heading = document.createElement("h2");
    heading.textContent = "Ward " + (ward || "—");
    var grid = document.createElement("div");
    grid.className = "tiles";
    section.appendChild(heading);
    section.appendChild(grid);
    root.appendChild(section);
    var empty = document.getElementById("station-empty");
    if (empty) { empty.remove(); }
    return grid;
  }

  function ensureTile(patient) {
    var key = String(patient.id);
    if (tiles[key]) { return tiles[key]; }
    var element = document.createElement("a");
    element.className = "tile";
    element.id = "tile-" + key;
    element.dataset.patient = key;
    element.href = "/patients/" + key + "/live/";
    element.innerHTML = '<div class="tile-head"><span class="bed"></span> <span class="name"></span>' +
      '<span class="battery" hidden></span>' +
      '<span class="signal-badge" hidden>No signal</span>' +
      '<span class="analysis-badge" hidden>Analysis delayed</span></div>' +
      '<canvas class="wave" width="300" height="70"></canvas>' +
      '<div class="tile-foot"><span class="hr">--</span><span class="unit">bpm</span> <span class="rhythm">—</span></div>' +
      '<div class="alarm-text"></div>';
    element.querySelector(".bed").textContent = patient.bed || "—";
    element.querySelector(".name").textContent = patient.name;
    element.querySelector(".name").title = patient.name;  // a long one is cut to two lines
    wardSection(patient.ward || "").appendChild(element);
    tiles[key] = tileState(element);
    return tiles[key];
  }

  function removeTile(key) {
    var element = tiles[key].element;
    var section = element.closest("section.ward");
    if (resized) { resized.unobserve(tiles[key].canvas); }
    element.remove();
    delete tiles[key];
    if (section && !section.querySelector(".tile")) { section.remove(); }
  }

  function showStatus(tile, status) {
    var element = tile.element;
    if (status.recording && status.recording < tile.recordingId) {
      // the last round of a recording a new session replaced (ids grow): it says nothing
      // about the signal or the vital signs now, only the alarm is the patient's
      if ("alarm" in status) { showAlarm(tile, status.alarm); }
      return;
    }
    if (status.recording) { tile.recordingId = status.recording; }
    window.CardioSpike.batteryFromStatus(tile, status);  // shown by showSignal
    if ("signal" in status) {
      tile.signal = status.signal;
      // a live signal's status says how old its newest chunk is: a station that just
      // opened (its backlog's waves are old) counts the silence from there
      if (status.signal === "live" || status.signal === "leads_off") {
        tile.dataAt = Date.now() - (status.signal_age_s || 0) * 1000;
      }
      showSignal(tile);
    }
    if (status.type === "status") { window.CardioSpike.analysisStatus(tile.analysis, status); }
    showAnalysis(tile);
    // without a signal, or with the analysis behind it, the numbers are the past, not vital
    // signs (showSignal and showAnalysis blanked them)
    var past = tile.noSignal || tile.analysisDelayed;
    if ("hr_bpm" in status) {
      element.querySelector(".hr").textContent =
        past || status.hr_bpm === null || status.hr_bpm === undefined ? "--" :
          String(Math.round(status.hr_bpm));
    }
    if ("rhythm" in status) {
      element.querySelector(".rhythm").textContent = (!past && status.rhythm) || "—";
    }
    if ("alarm" in status) { showAlarm(tile, status.alarm); }
  }

  function showSignal(tile) {
    // the no-signal state, independent of the alarm colour: a badge and a class of its own
    var lost = window.CardioSpike.signalLost(tile);
    var element = tile.element;
    var badge = element.querySelector(".signal-badge");
    // the charge goes with the signal (and a silence that has just begun), whatever else changed
    window.CardioSpike.showBattery(element.querySelector(".battery"), tile);
    if (badge) {
      badge.textContent = window.CardioSpike.signalText(tile);
    }
    if (lost === tile.noSignal) { return; }
    tile.noSignal = lost;
    element.classList.toggle("no-signal", lost);
    if (badge) { badge.hidden = !lost; }
    if (lost) {
      // the last values are the past, not vital signs; the next status sets them again
      blankVitals(element);
    } else {
      window.CardioSpike.analysisSignalBack(tile.analysis);
    }
  }

  function showAnalysis(tile) {
    // the analysis-delayed state: only while the signal is live ("No signal" and "Leads off"
    // say more, and no analysis is due without samples)
    var lagS = tile.noSignal ? 0 : window.CardioSpike.analysisDelayS(tile.analysis, tile.chunkS);
    var delayed = lagS > 0;
    var element = tile.element;
    var badge = element.querySelector(".analysis-badge");
    if (badge && delayed) {
      badge.textContent = window.CardioSpike.analysisText(lagS);
      badge.title = "The analysis is " + Math.round(lagS) + " s behind this signal: heart " +
        "rate, rhythm and their alarms are not current";
    }
    if (delayed === tile.analysisDelayed) { return; }
    tile.analysisDelayed = delayed;
    element.classList.toggle("analysis-delayed", delayed);
    if (badge) { badge.hidden = !delayed; }
    if (delayed) {
      // the last values are the past, not vital signs; the next status in time sets them again
      blankVitals(element);
    }
  }

  function blankVitals(element) {
    element.querySelector(".hr").textContent = "--";
    element.querySelector(".rhythm").textContent = "—";
  }

  function showAlarm(tile, alarm) {
    // alarm: the patient's top open alarm (status "alarm", an alarm message's "top_alarm")
    var element = tile.element;
    element.classList.remove("critical", "warning", "technical", "acknowledged");
    if (alarm && alarm.priority) {
      element.classList.add(alarm.priority);
      // the colour stays until the alarms resolve (the condition is still there), the blink
      // stops once nobody is left to tell: every open alarm acknowledged
      if (alarm.unacknowledged === 0) { element.classList.add("acknowledged"); }
    }
    var text = element.querySelector(".alarm-text");
    text.textContent = alarm ? (alarm.message || "") : "";
    // a critical alarm that resolved before anyone acknowledged it latches: it stays
    if (alarm && alarm.state === "resolved") { text.textContent += " (over, not acknowledged)"; }
    if (alarm && alarm.acknowledged_by) {
      var mark = document.createElement("span");
      mark.className = "ack-mark";
      mark.textContent = "✓ " + alarm.acknowledged_by;
      text.appendChild(document.createTextNode(" "));
      text.appendChild(mark);
    }
    if (alarm && alarm.acknowledged_by && alarm.unacknowledged > 0) {
      // the tile blinks for another alarm, one nobody has acknowledged: say so
      text.appendChild(document.createTextNode(" · " + alarm.unacknowledged +
        " more to acknowledge"));
    }
  }

  function addWave(tile, message) {
    if (message.recording < tile.recordingId) {
      return;  // late samples of a recording a new session replaced (ids grow): not the trace
    }
    tile.recordingId = message.recording;
    if (tile.recording !== message.recording || tile.fs !== message.fs_hz || !tile.buffer) {
      tile.recording = message.recording;
      tile.fs = message.fs_hz;
      tile.buffer = new Float32Array(Math.round(SWEEP_S * message.fs_hz)).fill(NaN);
      tile.last = -1;
    }
    var n = tile.buffer.length;
    var end = message.first_sample + message.samples_mv.length;
    tile.signal = window.CardioSpike.signalAfterSamples(tile, message, end - 1 > tile.last);
    tile.dataAt = Date.now();
    tile.chunkS = message.samples_mv.length / message.fs_hz;
    showSignal(tile);
    // end_sample and recording_fs_hz: where the chunk ends in the recording's own samples,
    // the unit of a status' last_sample
    window.CardioSpike.analysisSamples(tile.analysis, message.recording, message.end_sample,
      message.recording_fs_hz);
    showAnalysis(tile);
    if (end <= tile.last - n) { return; }   // older than what the tile still shows
    for (var i = 0; i < message.samples_mv.length; i++) {
      var index = message.first_sample + i;
      if (index <= tile.last - n) { continue; }
      tile.buffer[index % n] = message.samples_mv[i];
    }
    if (end - 1 > tile.last) {
      // samples skipped over (a gap) must not show the previous sweep's trace
      for (var j = Math.max(tile.last + 1, end - n); j < message.first_sample; j++) {
        tile.buffer[j % n] = NaN;
      }
      tile.last = end - 1;
    }
    dirty = true;
  }

  function drawTile(tile) {
    var canvas = tile.canvas, ratio = fitCanvas(canvas), context = canvas.getContext("2d");
    var width = canvas.width, height = canvas.height;
    context.fillStyle = "#0b1118";
    context.fillRect(0, 0, width, height);
    if (!tile.buffer) { return; }
    var buffer = tile.buffer, n = buffer.length;
    var values = [];
    for (var k = 0; k < n; k++) { if (!isNaN(buffer[k])) { values.push(buffer[k]); } }
    if (!values.length) { return; }
    values.sort(function (a, b) { return a - b; });
    var median = values[Math.floor(values.length / 2)];
    var cursor = tile.last % n;
    var gap = Math.round(GAP_S * tile.fs);
    var pxPerMv = height / MV_RANGE;
    context.strokeStyle = "#3ce37a";
    context.lineWidth = 1.2 * ratio;
    context.beginPath();
    var pen = false;
    for (var i = 0; i < n; i++) {
      var ahead = (i - cursor + n) % n;   // 1..gap: just ahead of the write position
      var value = buffer[i];
      if (isNaN(value) || (ahead > 0 && ahead <= gap)) { pen = false; continue; }
      var x = (i / n) * width;
      var y = height / 2 - (value - median) * pxPerMv;
      if (pen) { context.lineTo(x, y); } else { context.moveTo(x, y); pen = true; }
    }
    context.stroke();
  }

  window.addEventListener("resize", function () {
    Object.keys(tiles).forEach(function (key) { fitCanvas(tiles[key].canvas); });
    dirty = true;
  });

  function frame() {
    if (dirty) {
      dirty = false;
      Object.keys(tiles).forEach(function (key) { drawTile(tiles[key]); });
    }
    window.requestAnimationFrame(frame);
  }

  function handle(message) {
    if (message.type === "hello") {
      var listed = {};
      (message.patients || []).forEach(function (patient) {
        listed[String(patient.id)] = true;
        var tile = ensureTile(patient);
        showStatus(tile, patient);
      });
      Object.keys(tiles).forEach(function (key) {
        if (!listed[key]) { removeTile(key); }
      });
      dirty = true;
    } else if (message.type === "status") {
      var statusTile = tiles[String(message.patient)];
      if (statusTile) { showStatus(statusTile, message); }
    } else if (message.type === "wave") {
      var tile = tiles[String(message.patient)];
      if (tile) { addWave(tile, message); }
    } else if (message.type === "alarm") {
      var alarmTile = tiles[String(message.patient)];
      // raised, acknowledged or resolved: the message carries what the tile shows now, so a
      // tile changes at once, also when no analysis follows (a device that went offline)
      if (alarmTile && "top_alarm" in message) { showAlarm(alarmTile, message.top_alarm); }
    }
  }

  function showConnection(state, waitMs) {
    var described = window.CardioSpike.describeConnection(state, waitMs);
    connection.textContent = described.text;  // the socket; each tile shows its signal
    connection.className = described.error ? "small error" : "small online";
    root.classList.toggle("connection-lost", !described.current);
    window.CardioSpike.showConnectionBanner(document.getElementById("connection-lost"), described);
  }

  function socketUrl() {
    // After a drop, the seconds missed plus a margin; a tile shows SWEEP_S seconds, so more
    // than that (plus the margin) would be sent only to fall off the tile.
    var sinceS = SWEEP_S + 5;
    if (lastMessageAt) {
      sinceS = Math.min(SWEEP_S + 5, Math.ceil((Date.now() - lastMessageAt) / 1000) + 5);
    }
    return root.dataset.socket + "?since_s=" + sinceS;
  }

  window.requestAnimationFrame(frame);
  // a device that stops sends nothing more, a worker that stops no status: look every second
  setInterval(function () {
    Object.keys(tiles).forEach(function (key) {
      showSignal(tiles[key]);
      showAnalysis(tiles[key]);
    });
  }, 1000);
  window.CardioSpike.liveSocket({
    url: socketUrl,
    onMessage: function (message) {
      lastMessageAt = Date.now();
      handle(message);
    },
    onState: showConnection,
  });
})();
