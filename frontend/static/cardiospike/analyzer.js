// The analyzer page: load, generate, paste or upload a single-lead ECG, draw it on ECG grid
// paper (25 mm/s), send it to /predict and show the verdict with a saliency overlay.
(function () {
  "use strict";

  var MM_PER_S = 25;       // paper speed
  var PX_PER_MM = 4;        // set by draw(): a short strip is magnified to fill the frame
  var state = { ecg: null, fs: 250, source: "", result: null };

  var $ = function (id) { return document.getElementById(id); };
  // /predict computes saliency maps for at most this many seconds of signal and refuses
  // "explain" beyond it (PREDICT_MAX_EXPLAIN_S, given by the page)
  var MAX_EXPLAIN_S = Number($("analyzer").dataset.maxExplainS);
  var canvas = $("ecg");
  var context = canvas.getContext("2d");

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function showError(message) { $("signal-error").textContent = message || ""; }

  function setSignal(ecg, fs, source) {
    state.ecg = ecg;
    state.fs = fs;
    state.source = source;
    state.result = null;
    clearResult();
    $("signal-info").textContent = source + ": " + ecg.length + " samples at " + fs +
      " Hz (" + (ecg.length / fs).toFixed(2) + " s)";
    $("analyze").disabled = false;
    showError("");
    showSaliencyNote();
    draw();
  }

  // A failed read leaves nothing loaded: the previous signal would otherwise stay drawn with
  // Analyze enabled, and the next click would give a verdict for a file the user replaced
  function clearSignal(message) {
    state.ecg = null;
    state.source = "";
    state.result = null;
    clearResult();
    $("signal-info").textContent = "No signal loaded.";
    $("analyze").disabled = true;
    $("saliency-note").hidden = true;
    $("saliency-note").textContent = "";
    showError(message);
    draw();
  }

  function explainable() {
    return state.ecg.length <= MAX_EXPLAIN_S * state.fs;
  }

  // A longer signal is analysed without saliency maps: say so, rather than leave the
  // overlay checkbox doing nothing
  function showSaliencyNote() {
    var note = $("saliency-note");
    note.hidden = explainable();
    note.textContent = note.hidden ? "" : "Saliency overlay off for this signal: it is " +
      (state.ecg.length / state.fs).toFixed(1) + " s long, and the server explains at most " +
      MAX_EXPLAIN_S + " s. Cut it to " + MAX_EXPLAIN_S + " s or less to see it.";
  }

  // --- Drawing -----------------------------------------------------------------------

  function draw() {
    var ecg = state.ecg;
    var gain = Number($("gain").value);             // mm per mV
    var seconds = ecg ? ecg.length / state.fs : 2;
    var frameWidth = canvas.parentElement.clientWidth || 1000;
    PX_PER_MM = Math.max(3, Math.min(12, frameWidth / (seconds * MM_PER_S)));
    canvas.width = Math.ceil(seconds * MM_PER_S * PX_PER_MM);
    canvas.height = Math.round(75 * PX_PER_MM > 420 ? 420 : 75 * PX_PER_MM);
    var width = canvas.width, height = canvas.height;
    context.fillStyle = "#fff";
    context.fillRect(0, 0, width, height);
    drawSaliency(width, height);
    drawGrid(width, height);
    if (!ecg) { return; }
    // centre the trace on its median so a baseline offset does not push it off the paper
    var sorted = ecg.slice().sort(function (a, b) { return a - b; });
    var median = sorted[Math.floor(sorted.length / 2)];
    var pxPerMv = gain * PX_PER_MM;
    context.strokeStyle = "#111";
    context.lineWidth = 1.3;
    context.beginPath();
    for (var i = 0; i < ecg.length; i++) {
      var x = (i / state.fs) * MM_PER_S * PX_PER_MM;
      var y = height / 2 - (ecg[i] - median) * pxPerMv;
      if (i === 0) { context.moveTo(x, y); } else { context.lineTo(x, y); }
    }
    context.stroke();
    // 1 mV calibration pulse at the left edge
    context.strokeStyle = "#1d4ed8";
    context.beginPath();
    context.moveTo(4, height - 20);
    context.lineTo(4, height - 20 - pxPerMv);
    context.lineTo(4 + 5 * PX_PER_MM, height - 20 - pxPerMv);
    context.lineTo(4 + 5 * PX_PER_MM, height - 20);
    context.stroke();
  }

  function drawGrid(width, height) {
    for (var mm = 0; mm * PX_PER_MM <= width; mm++) {
      var x = Math.round(mm * PX_PER_MM);
      var major = mm % 5 === 0;
      context.strokeStyle = major ? "rgba(220, 80, 80, 0.55)" : "rgba(240, 150, 150, 0.35)";
      context.lineWidth = major ? 1 : 0.5;
      context.beginPath(); context.moveTo(x + 0.5, 0); context.lineTo(x + 0.5, height); context.stroke();
    }
    for (var mmY = 0; mmY * PX_PER_MM <= height; mmY++) {
      var y = Math.round(mmY * PX_PER_MM);
      var majorY = mmY % 5 === 0;
      context.strokeStyle = majorY ? "rgba(220, 80, 80, 0.55)" : "rgba(240, 150, 150, 0.35)";
      context.lineWidth = majorY ? 1 : 0.5;
      context.beginPath(); context.moveTo(0, y + 0.5); context.lineTo(width, y + 0.5); context.stroke();
    }
  }

  function drawSaliency(width, height) {
    var result = state.result;
    if (!result || !$("show-saliency").checked) { return; }
    result.windows.forEach(function (window) {
      if (!window.saliency) { return; }
      var n = window.saliency.length;          // 500 values over 2 s at 250 Hz
      var pxPerValue = (2.0 / n) * MM_PER_S * PX_PER_MM;
      for (var i = 0; i < n; i++) {
        var t = window.start_s + (i * 2.0) / n;
        if (t >= window.end_s) { break; }
        var alpha = 0.45 * window.saliency[i];
        if (alpha < 0.02) { continue; }
        context.fillStyle = "rgba(255, 140, 0, " + alpha.toFixed(3) + ")";
        context.fillRect(t * MM_PER_S * PX_PER_MM, 0, Math.ceil(pxPerValue), height);
      }
    });
  }

  // --- Results -----------------------------------------------------------------------

  function clearResult() {
    $("verdict").textContent = "—";
    $("verdict").className = "verdict";
    $("prob-chart").innerHTML = "";
    ["processing-ms", "round-trip-ms", "model-used", "window-count"].forEach(function (id) {
      $(id).textContent = "—";
    });
    $("window-table").querySelector("tbody").innerHTML = "";
  }

  function showResult(body, roundTripMs) {
    state.result = body;
    var verdict = $("verdict");
    verdict.textContent = body.prediction;
    verdict.className = "verdict " + body.label;
    var chart = $("prob-chart");
    chart.innerHTML = "";
    Object.keys(body.probabilities).forEach(function (name) {
      var p = body.probabilities[name];
      var row = document.createElement("div");
      row.className = "bar";
      row.innerHTML = '<span></span><div class="track"><div class="fill ' + name +
        '"></div></div><span class="value"></span>';
      row.children[0].textContent = name;
      row.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
      row.children[2].textContent = (100 * p).toFixed(1) + " %";
      chart.appendChild(row);
    });
    $("processing-ms").textContent = body.processing_ms.toFixed(1) + " ms (model)";
    $("round-trip-ms").textContent = roundTripMs.toFixed(0) + " ms (browser to server and back)";
    $("model-used").textContent = body.model.name + " v" + body.model.version;
    $("window-count").textContent = String(body.windows.length);
    var tbody = $("window-table").querySelector("tbody");
    tbody.innerHTML = "";
    body.windows.forEach(function (window) {
      var tr = document.createElement("tr");
      [window.start_s.toFixed(1) + "–" + window.end_s.toFixed(1) + " s", window.label,
        (100 * window.probabilities.arrhythmia).toFixed(1) + " %"].forEach(function (text) {
        var td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    draw();
  }

  function analyze() {
    if (!state.ecg) { return; }
    $("analyze").disabled = true;
    showError("");
    var analysed = state.ecg;
    var started = performance.now();
    fetch("/predict", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({
        ecg: state.ecg, fs: state.fs, model: $("model").value, explain: explainable(),
      }),
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (answer) {
      // another signal was loaded (or a read failed) meanwhile: this verdict is not for it
      if (state.ecg !== analysed) { return; }
      if (!answer.ok) { throw new Error(answer.body.detail || "the server refused the signal"); }
      showResult(answer.body, performance.now() - started);
    }).catch(function (error) {
      if (state.ecg === analysed) { showError("Analysis failed: " + error.message); }
    }).finally(function () {
      $("analyze").disabled = !state.ecg;
    });
  }

  // --- Sources -----------------------------------------------------------------------

  function getJson(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) { throw new Error(body.detail || response.statusText); }
        return body;
      });
    });
  }

  function generate() {
    var kind = $("synthetic-kind").value;
    var seed = Math.floor(Math.random() * 1e6);
    getJson("/api/synthetic/?kind=" + encodeURIComponent(kind) + "&seed=" + seed)
      .then(function (body) { setSignal(body.ecg, body.fs, "synthetic " + kind + " (seed " + seed + ")"); })
      .catch(function (error) { clearSignal("Could not generate: " + error.message); });
  }

  function loadExcerpt() {
    var id = $("excerpt").value;
    getJson("/api/examples/" + encodeURIComponent(id) + "/")
      .then(function (body) { setSignal(body.ecg, body.fs, "MIT-BIH " + body.record + ": " + body.description); })
      .catch(function (error) { clearSignal("Could not load the excerpt: " + error.message); });
  }

  // A number written with a decimal comma: "0,12", "-0,20".
  var DECIMAL_COMMA = /^[+-]?\d*,\d+$/;

  function decimalComma(lineNumber, cell, couldBeColumns) {
    return new Error("line " + lineNumber + ": " + JSON.stringify(cell) + " has a decimal " +
      "comma; write numbers with a decimal point (" + cell.replace(",", ".") + ")" +
      (couldBeColumns ? ", or put a space after the comma if these are two numbers" : ""));
  }

  // Accepts a JSON list, a JSON object {"ecg": [...], "fs": n}, or CSV/plain text: numbers
  // separated by commas, spaces or new lines; with several columns, the last one is the ECG.
  // Columns are separated by semicolons or tabs where the lines have them, else by commas.
  // Decimal commas are refused, never guessed: read as two columns, "-0,20" became 20.
  function parseSignal(text, fsField) {
    var trimmed = text.trim();
    if (!trimmed) { throw new Error("nothing to read"); }
    if (trimmed[0] === "[" || trimmed[0] === "{") {
      var parsed = JSON.parse(trimmed);
      if (Array.isArray(parsed)) { return { ecg: parsed, fs: fsField }; }
      if (!Array.isArray(parsed.ecg)) { throw new Error('a JSON object needs an "ecg" list'); }
      return { ecg: parsed.ecg, fs: parsed.fs || fsField };
    }
    var lines = trimmed.split(/\r?\n/).filter(function (line) { return line.trim(); });
    var values = [];
    // With semicolons or tabs, those separate the numbers and a comma can only be a decimal
    // comma; without a decimal point anywhere, "0,12" is one number with a decimal comma, not
    // the numbers 0 and 12 (a signal in mV has fractions; "0, 12" with a space stays two)
    var semicolons = /[;\t]/.test(trimmed);
    var commaIsDecimal = semicolons || trimmed.indexOf(".") < 0;
    var separator = semicolons ? /[;\t]/ : /,/;
    var multiColumn = lines.length > 1 && lines[lines.length - 1].split(separator).length > 1;
    lines.forEach(function (line, index) {
      var cells = [];
      if (multiColumn) {
        // the last column is the ECG: "-0,20" is refused whole before it could become 20
        if (!semicolons && commaIsDecimal && DECIMAL_COMMA.test(line.trim())) {
          throw decimalComma(index + 1, line.trim(), true);
        }
        cells.push(line.split(separator).pop());
      } else {
        line.split(/[\s;]+/).forEach(function (token) {
          if (commaIsDecimal && DECIMAL_COMMA.test(token)) {
            throw decimalComma(index + 1, token, !semicolons);
          }
          token.split(",").forEach(function (cell) { cells.push(cell); });
        });
      }
      cells.forEach(function (cell) {
        cell = cell.trim();
        if (!cell) { return; }
        // a column separated by semicolons or tabs keeps its commas
        if (DECIMAL_COMMA.test(cell)) { throw decimalComma(index + 1, cell); }
        var value = Number(cell);
        if (!Number.isFinite(value)) {
          if (index === 0) { return; }      // a header row
          throw new Error("line " + (index + 1) + ": " + JSON.stringify(cell) + " is not a number");
        }
        values.push(value);
      });
    });
    return { ecg: values, fs: fsField };
  }

  function usePasted(text, source) {
    try {
      var signal = parseSignal(text, Number($("fs").value));
      if (signal.ecg.length < 2) { throw new Error("fewer than two numbers"); }
      setSignal(signal.ecg, signal.fs, source);
    } catch (error) {
      clearSignal("Could not read the signal: " + error.message);
    }
  }

  $("generate").addEventListener("click", generate);
  $("load-excerpt").addEventListener("click", loadExcerpt);
  $("use-paste").addEventListener("click", function () { usePasted($("paste").value, "pasted signal"); });
  $("upload").addEventListener("change", function (event) {
    var file = event.target.files[0];
    if (!file) { return; }
    file.text().then(function (text) { usePasted(text, file.name); });
  });
  $("analyze").addEventListener("click", analyze);
  $("gain").addEventListener("change", draw);
  $("show-saliency").addEventListener("change", draw);
  $("download").addEventListener("click", function () {
    $("download").href = canvas.toDataURL("image/png");
  });
  draw();
})();
