// Shows in the top bar whether the page's live (websocket) connection to the server is up
// (livesocket.js notices a dead one and reconnects).
//
// Also the live pages' one rule for "analysis delayed" (live.js and station.js share it; it is
// here because every page loads this file, after livesocket.js and before the page's own
// script). docs/dashboard.md, "Analysis delayed".
(function () {
  "use strict";
  if (!window.CardioSpike) { return; }

  // The analysis this far behind the signal (plus the last chunk's length, as for "No
  // signal": a device may send chunks of up to 20 s, analysed only once they have come) makes
  // the heart rate and rhythm on the pages the past. Normally a status comes after every
  // chunk's analysis round, a second apart, and the analysed end is at most one chunk behind
  // the newest samples (measured: 4 devices on one worker, lag at most 1.0 s, statuses 1.0-1.1 s
  // apart); 15 devices on one overloaded worker lagged up to 9 s, and bench/device_ingest.py's
  // chunk-to-analysed p99 is at most 4.7 s at 40 devices. 15 s stays above those, so a healthy
  // stream never says it, and a stopped worker is said within about 17 s (the rhythm itself is
  // known 7-12 s after an episode starts).
  var timing = window.CardioSpikeSocketTiming || {};  // tests shorten it
  var ANALYSIS_DELAY_S = timing.analysisDelayS || 15;

  // A page's view of how far one patient's analysis has got: the recording it is about, the
  // analysed end (the last status' last_sample, the analysis cursor: the first sample not yet
  // analysed), the end of the newest samples received (both in the recording's own samples, at
  // fsHz), and when the last status came (Date.now(); or when the recording's first samples did,
  // or the signal came back, before one).
  function analysisTrack() {
    return { recording: null, analysedSample: null, newestSample: null, fsHz: 0, statusAt: 0 };
  }

  function startRecording(track, recording) {
    // a new recording (a device's new session): the old one's positions say nothing of it
    track.recording = recording;
    track.analysedSample = null;
    track.newestSample = null;
    track.statusAt = Date.now();
  }

  // samples of `recording` up to endSample (exclusive) at fsHz, the recording's own rate
  function analysisSamples(track, recording, endSample, fsHz) {
    if (typeof endSample !== "number" || !fsHz) { return; }  // a wave from an older server
    if (track.recording !== recording) { startRecording(track, recording); }
    track.fsHz = fsHz;
    track.newestSample = track.newestSample === null ? endSample :
      Math.max(track.newestSample, endSample);
  }

  // a status: how far the analysis of its recording has got
  function analysisStatus(track, status) {
    if (!status.recording || typeof status.last_sample !== "number") { return; }
    if (track.recording !== status.recording) { startRecording(track, status.recording); }
    // the cursor only moves forward; a status overtaken by a later one must not move it back
    track.analysedSample = track.analysedSample === null ? status.last_sample :
      Math.max(track.analysedSample, status.last_sample);
    track.statusAt = Date.now();
  }

  // the signal came back after "No signal" or "Leads off": no status was due while no
  // samples came (statuses follow analysis rounds, which follow samples), so the clock restarts
  function analysisSignalBack(track) {
    if (track.statusAt) { track.statusAt = Date.now(); }
  }

  // How many seconds the analysis is behind, when that is over the limit (else 0): the server's
  // numbers first (newest samples received against the last status' analysed end), and the
  // time since the last status as a fallback, for when the page has no analysed end for the
  // recording (a new session that began after the statuses stopped). Only while samples come:
  // a page calls it only while its signal is live.
  function analysisDelayS(track, chunkS) {
    var lagS = 0;
    if (track.analysedSample !== null && track.newestSample !== null && track.fsHz) {
      lagS = (track.newestSample - track.analysedSample) / track.fsHz;
    }
    if (track.statusAt) { lagS = Math.max(lagS, (Date.now() - track.statusAt) / 1000); }
    return lagS > ANALYSIS_DELAY_S + (chunkS || 0) ? lagS : 0;
  }

  function analysisText(lagS) {
    return "Analysis delayed " + Math.round(lagS) + " s";
  }

  var analysis = {
    analysisTrack: analysisTrack,
    analysisSamples: analysisSamples,
    analysisStatus: analysisStatus,
    analysisSignalBack: analysisSignalBack,
    analysisDelayS: analysisDelayS,
    analysisText: analysisText,
  };
  Object.keys(analysis).forEach(function (name) { window.CardioSpike[name] = analysis[name]; });
})();

(function () {
  "use strict";
  var badge = document.getElementById("live-status");
  if (!badge || !window.WebSocket || !window.CardioSpike) { return; }
  window.CardioSpike.liveSocket({
    url: function () { return "/ws/status/"; },
    onMessage: function () {},
    onState: function (state, waitMs) {
      badge.textContent = state === "connected" ? "connected" :
        window.CardioSpike.describeConnection(state, waitMs).text;
      badge.classList.toggle("online", state === "connected");
    },
  });
})();
