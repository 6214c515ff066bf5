// The 12-lead diagnosis page: load a PTB-XL example or read an uploaded WFDB record, draw it
// in the standard 3x4 layout with a lead II rhythm strip on ECG grid paper (25 mm/s,
// 10 mm/mV), edit the patient metadata and ask /api/diagnosis/ for the five superclasses.
(function () {
  "use strict";

  var MM_PER_S = 25;         // paper speed
  var MM_PER_MV = 10;        // gain
  var COLUMN_S = 2.5;        // each lead of the 3x4 layout shows 2.5 s
  var ROW_MM = 32;           // height of one row of leads
  var LEFT_MM = 8;           // room for the calibration pulse
  var TOP_MM = 4;
  // Leads arrive in PTB-XL order: I, II, III, aVR, aVL, aVF, V1-V6 (indices 0-11).
  var NAMES = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];
  var LAYOUT = [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]];
  var RHYTHM_LEAD = 1;       // lead II
  var FEATURES = ["age_years", "sex_female", "height_cm", "weight_kg", "pacemaker",
    "device_cs", "heart_axis"];

  var $ = function (id) { return document.getElementById(id); };
  var canvas = $("ecg12");
  var context = canvas.getContext("2d");
  // leads: 12 arrays (mV) in PTB-XL order; files: the WFDB upload to send, if any
  // failed: the last read or load failed, so Diagnose waits for a record (recordFailed)
  var state = { leads: null, fs: 100, files: null, label: "", pxPerMm: 4, failed: false };

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function answerOf(response) {
    return response.json().catch(function () { return { detail: response.statusText }; })
      .then(function (body) {
        if (!response.ok) { throw new Error(body.detail || response.statusText); }
        return body;
      });
  }

  // --- Drawing -------------------------------------------------------------------------

  function draw() {
    var widthMm = LEFT_MM + 4 * COLUMN_S * MM_PER_S + 2;
    var heightMm = TOP_MM + 4 * ROW_MM + 2;
    var frameWidth = canvas.parentElement.clientWidth || 1100;
    var px = Math.max(2.5, Math.min(6, (frameWidth - 2) / widthMm));  // fit, unless tiny
    state.pxPerMm = px;
    canvas.width = Math.ceil(widthMm * px);
    canvas.height = Math.ceil(heightMm * px);
    context.fillStyle = "#fff";
    context.fillRect(0, 0, canvas.width, canvas.height);
    drawGrid(px);
    if (!state.leads) { return; }
    for (var row = 0; row < 3; row++) {
      for (var column = 0; column < 4; column++) {
        drawLead(LAYOUT[row][column], row, column * COLUMN_S, (column + 1) * COLUMN_S, px);
      }
    }
    drawLead(RHYTHM_LEAD, 3, 0, 4 * COLUMN_S, px);
    for (var r = 0; r < 4; r++) { drawCalibration(r, px); }
  }

  function drawGrid(px) {
    var lines = function (count, along) {
      for (var mm = 0; mm <= count; mm++) {
        var major = mm % 5 === 0;
        context.strokeStyle = major ? "rgba(220, 80, 80, 0.55)" : "rgba(240, 150, 150, 0.35)";
        context.lineWidth = major ? 1 : 0.5;
        var at = Math.round(mm * px) + 0.5;
        context.beginPath();
        if (along === "x") { context.moveTo(at, 0); context.lineTo(at, canvas.height); }
        else { context.moveTo(0, at); context.lineTo(canvas.width, at); }
        context.stroke();
      }
    };
    lines(Math.floor(canvas.width / px), "x");
    lines(Math.floor(canvas.height / px), "y");
  }

  function rowBaseline(row) { return (TOP_MM + (row + 0.5) * ROW_MM); }  // mm from top

  function median(values) {
    var sorted = Array.prototype.slice.call(values).sort(function (a, b) { return a - b; });
    return sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
  }

  function drawLead(lead, row, startS, endS, px) {
    var signal = state.leads[lead];
    var fs = state.fs;
    var first = Math.round(startS * fs);
    var last = Math.min(signal.length, Math.round(endS * fs));
    if (last <= first) { return; }
    var segment = signal.slice(first, last);
    var offset = median(segment);  // centre the segment so a baseline offset stays on its row
    var x0 = (LEFT_MM + startS * MM_PER_S) * px;
    var baseline = rowBaseline(row) * px;
    context.save();
    context.strokeStyle = "#111";
    context.lineWidth = 1.2;
    context.beginPath();
    for (var i = 0; i < segment.length; i++) {
      var x = x0 + (i / fs) * MM_PER_S * px;
      var y = baseline - (segment[i] - offset) * MM_PER_MV * px;
      if (i === 0) { context.moveTo(x, y); } else { context.lineTo(x, y); }
    }
    context.stroke();
    // the lead's name on a white patch, so a tall QRS passing under it cannot hide it
    context.font = "bold " + Math.round(3.2 * px) + "px system-ui, sans-serif";
    var labelX = x0 + 1.5 * px, labelY = (rowBaseline(row) - ROW_MM / 2 + 4.5) * px;
    var labelWidth = context.measureText(NAMES[lead]).width;
    context.fillStyle = "rgba(255, 255, 255, 0.85)";
    context.fillRect(labelX - 0.5 * px, labelY - 3.3 * px, labelWidth + px, 4.2 * px);
    context.fillStyle = "#1d2733";
    context.fillText(NAMES[lead], labelX, labelY);
    if (startS > 0) {  // the short bar between two leads of a row
      context.strokeStyle = "#111";
      context.beginPath();
      context.moveTo(x0, baseline - 3 * px);
      context.lineTo(x0, baseline + 3 * px);
      context.stroke();
    }
    context.restore();
  }

  function drawCalibration(row, px) {
    // 1 mV for 0.2 s: 10 mm high, 5 mm wide, the reader's check of gain and speed
    var baseline = rowBaseline(row) * px;
    context.strokeStyle = "#1d4ed8";
    context.lineWidth = 1.2;
    context.beginPath();
    context.moveTo(1 * px, baseline);
    context.lineTo(2 * px, baseline);
    context.lineTo(2 * px, baseline - MM_PER_MV * px);
    context.lineTo(7 * px, baseline - MM_PER_MV * px);
    context.lineTo(7 * px, baseline);
    context.lineTo(LEFT_MM * px, baseline);
    context.stroke();
  }

  // --- The record ----------------------------------------------------------------------

  function setRecord(leads, fs, label, files, reference) {
    state.leads = leads;
    state.fs = fs;
    state.files = files;
    state.label = label;
    $("record-error").textContent = "";
    $("record-info").textContent = leads
      ? label + ": 12 leads, " + leads[0].length + " samples at " + fs + " Hz (" +
        (leads[0].length / fs).toFixed(2) + " s)"
      : "No record: the metadata-only model will answer.";
    $("reference").textContent = reference || "";
    state.failed = false;
    $("diagnose").disabled = false;
    clearResult();
    draw();
  }

  // A failed read or load leaves no record: the previous one would otherwise stay drawn and
  // labelled, and Diagnose would run on it. Diagnose waits for a record that reads, or for
  // "Metadata only", rather than quietly answering without the record the user chose.
  function recordFailed(message) {
    setRecord(null, 100, "", null, "");
    state.failed = true;
    $("diagnose").disabled = true;
    $("record-info").textContent = "No record loaded: read a record, load an example or " +
      "choose Metadata only.";
    $("record-error").textContent = message;
  }

  function fillMetadata(metadata) {
    FEATURES.forEach(function (name) {
      var value = metadata[name];
      $("meta-" + name).value = value === null || value === undefined ? "" : String(value);
    });
  }

  function loadExample() {
    var id = $("example").value;
    fetch("/api/diagnosis/examples/" + encodeURIComponent(id) + "/", { credentials: "same-origin" })
      .then(answerOf)
      .then(function (example) {
        fillMetadata(example.metadata);
        setRecord(example.leads, example.fs_hz, "PTB-XL ecg_id " + example.ecg_id, null,
          "Reference (PTB-XL cardiologists): " + (example.superclasses.join(", ") || "none") +
          " — SCP codes " + Object.keys(example.scp_codes).join(", "));
      })
      .catch(function (error) { recordFailed("Could not load: " + error.message); });
  }

  function readRecord() {
    var files = Array.prototype.slice.call($("record-files").files);
    if (!files.length) {
      $("record-error").textContent = "Choose the record's .hea and .dat files first.";
      return;
    }
    var form = new FormData();
    files.forEach(function (file) { form.append("files", file); });
    fetch("/api/diagnosis/record/", {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken() }, body: form,
    }).then(answerOf)
      .then(function (record) {
        setRecord(record.leads, record.fs_hz, "Uploaded record " + record.name, files, "");
      })
      .catch(function (error) { recordFailed("Could not read: " + error.message); });
  }

  // --- Diagnosis -----------------------------------------------------------------------

  function metadataValues() {
    var metadata = {};
    FEATURES.forEach(function (name) {
      var text = $("meta-" + name).value.trim();
      if (text !== "") { metadata[name] = Number(text); }
    });
    return metadata;
  }

  function clearResult() {
    $("prob-chart").innerHTML = "";
    ["called", "model-used", "mode", "imputed", "processing-ms"].forEach(function (id) {
      $(id).textContent = "—";
    });
    $("diagnosis-error").textContent = "";
    FEATURES.forEach(function (name) { $("imputed-" + name).textContent = ""; });
  }

  // What the model read for a blank field, in the field's own words: a select's option text
  // (0 -> "male", 0 -> "MID: normal axis"), else the number.
  function imputedText(name, value) {
    var field = $("meta-" + name);
    if (field.tagName === "SELECT") {
      for (var i = 0; i < field.options.length; i++) {
        if (field.options[i].value !== "" && Number(field.options[i].value) === value) {
          return field.options[i].textContent;
        }
      }
    }
    return String(Math.round(value * 10) / 10);
  }

  function showImputed(imputedValues) {
    Object.keys(imputedValues || {}).forEach(function (name) {
      var note = $("imputed-" + name);
      if (note) { note.textContent = "imputed as " + imputedText(name, imputedValues[name]); }
    });
  }

  function showResult(body, roundTripMs) {
    var chart = $("prob-chart");
    chart.innerHTML = "";
    Object.keys(body.probabilities).forEach(function (name) {
      var p = body.probabilities[name];
      var threshold = body.thresholds[name];
      var row = document.createElement("div");
      row.className = "bar" + (body.positive.indexOf(name) >= 0 ? " called" : "");
      row.setAttribute("data-class", name);
      row.innerHTML = '<span class="name"></span><div class="track"><div class="fill"></div>' +
        '<div class="threshold"></div></div><span class="value"></span>';
      row.querySelector(".name").textContent = name;
      row.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
      row.querySelector(".threshold").style.left = (100 * threshold).toFixed(1) + "%";
      row.querySelector(".threshold").title = "threshold " + (100 * threshold).toFixed(1) + " %";
      row.querySelector(".value").textContent = (100 * p).toFixed(1) + " %";
      chart.appendChild(row);
    });
    $("called").textContent = body.positive.length ? body.positive.join(", ") : "none";
    $("model-used").textContent = body.model.name + " v" + body.model.version + " (" +
      body.model.description + ")";
    $("mode").textContent = body.mode;
    $("imputed").textContent = body.imputed.length ? body.imputed.join(", ") : "none";
    showImputed(body.imputed_values);
    $("processing-ms").textContent = body.processing_ms.toFixed(1) + " ms on the server, " +
      roundTripMs.toFixed(0) + " ms round trip";
  }

  function diagnose() {
    var metadata = metadataValues();
    var request;
    if (state.files) {  // the uploaded files themselves, so the server reads them exactly
      var form = new FormData();
      state.files.forEach(function (file) { form.append("files", file); });
      Object.keys(metadata).forEach(function (name) { form.append(name, String(metadata[name])); });
      request = { headers: { "X-CSRFToken": csrfToken() }, body: form };
    } else {
      var body = { metadata: metadata };
      if (state.leads) { body.leads = state.leads; body.fs_hz = state.fs; }
      request = {
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify(body),
      };
    }
    $("diagnose").disabled = true;
    clearResult();
    var diagnosed = { leads: state.leads, files: state.files };
    var stale = function () {  // another record was loaded, or a read failed, meanwhile
      return state.leads !== diagnosed.leads || state.files !== diagnosed.files || state.failed;
    };
    var started = performance.now();
    fetch("/api/diagnosis/", {
      method: "POST", credentials: "same-origin", headers: request.headers, body: request.body,
    }).then(answerOf)
      .then(function (answer) { if (!stale()) { showResult(answer, performance.now() - started); } })
      .catch(function (error) {
        if (!stale()) { $("diagnosis-error").textContent = "Refused: " + error.message; }
      })
      .finally(function () { $("diagnose").disabled = state.failed; });
  }

  $("load-example").addEventListener("click", loadExample);
  $("read-record").addEventListener("click", readRecord);
  $("record-files").addEventListener("change", function () {
    if ($("record-files").files.length >= 2) { readRecord(); }
  });
  $("clear-record").addEventListener("click", function () { setRecord(null, 100, "", null, ""); });
  $("diagnose").addEventListener("click", diagnose);
  // The metadata form is never submitted (a reload would lose the record): the Diagnose
  // button reads its fields. A listener, not an onsubmit attribute, which the
  // Content-Security-Policy blocks.
  $("metadata-form").addEventListener("submit", function (event) { event.preventDefault(); });
  window.addEventListener("resize", draw);
  draw();
}());
