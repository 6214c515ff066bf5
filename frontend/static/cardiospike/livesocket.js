// The live pages' websocket (status.js, live.js, station.js share it): connects, pings, notices a
// dead connection, reconnects, and says which of these it is in. Also the pages' one rule for
// "no signal" and "leads off", and for when the device's battery charge shows.
//
// A connection can die without a close event (a Wi-Fi change, a NAT or proxy timeout): the
// browser then says nothing for many minutes while no alarm arrives. So the socket pings every
// PING_MS and the server answers each ping (consumers.py); when nothing at all, pongs included,
// has come for SILENT_MS the connection is taken for dead, dropped and made again. Reconnects
// wait 0.5-1 s, then up to 2, 4 and at most 5 s (a random part, so that the browsers of a ward
// do not all come back in the same instant after a server restart), and start at once when the
// browser comes back online or the tab is shown again.
//
// Close codes: 4403 (no longer allowed to see this patient) stops for good; 4401 (the session
// is not valid) asks the server over HTTP whether the browser is still signed in, since
// changing one's password gives the session a new key: still signed in, it reconnects (with the
// new cookie), else, asked once more SIGNED_OUT_RECHECK_MS later, it stops. A socket the server refuses at the handshake (a reconnect after
// signing out, or after losing access) closes with no code of ours (1006), so three sockets in
// a row that never opened ask the same question: signed out, or the page gone (404: access
// ended), it stops; a server that does not answer at all is simply tried again.
//
// onState(state, waitMs) hears "connected", "reconnecting" (with the wait before the next
// try), "signed-out" or "access-ended". A session also ends on its own after SESSION_IDLE_S
// without activity; an open live view or station is activity (the server renews the session
// at its access recheck), so that happens to pages that were closed, or whose connection was
// lost all that time. Research software, not a medical device.
(function () {
  "use strict";

  var timing = window.CardioSpikeSocketTiming || {};  // tests shorten these
  var PING_MS = timing.pingMs || 10000;
  var SILENT_MS = timing.silentMs || 25000;
  var MAX_DELAY_MS = timing.maxDelayMs || 5000;
  var FAILED_OPENS_BEFORE_CHECK = 3;
  // A password change in another tab deletes the old session while its answer, which gives
  // the browser the new cookie, is still on its way: a 4401 and a check in between read
  // "signed out". One more check this much later before the page gives up.
  var SIGNED_OUT_RECHECK_MS = timing.signedOutRecheckMs || 2000;

  // No samples for this long (plus the last chunk's length, for devices that send long
  // chunks): the device is silent. Devices send a chunk a second. The server calls a
  // recording stale only after DEVICE_OFFLINE_S (30 s; monitoring/live.py), when the
  // device-offline alarm comes: a status made at the end of a slow analysis round must not.
  var NO_SIGNAL_S = timing.noSignalS || 10;

  // item: a page's view of one patient's signal: the server's word on it (signal: "live",
  // "leads_off", "stale", "ended", "none"; null: not heard yet), when samples last came
  // (dataAt, Date.now()) and how long the last chunk was (chunkS). "leads_off": samples come,
  // but the device says an electrode is off (its newest samples' lead_off, or the status):
  // they are no ECG, so no heart rate or rhythm either.
  function silent(item) {
    return Date.now() - item.dataAt > (NO_SIGNAL_S + item.chunkS) * 1000;
  }

  function signalLost(item) {
    if (item.signal === null) { return false; }   // nothing heard yet: say nothing
    if (item.signal !== "live") { return true; }
    return silent(item);
  }

  // leads off, and its samples still coming: a device that then stops is "No signal"
  function leadsOff(item) {
    return item.signal === "leads_off" && !silent(item);
  }

  function signalText(item) {
    if (leadsOff(item)) { return "Leads off"; }
    return item.signal === "ended" ? "No signal · recording ended" :
      item.signal === "none" ? "No signal · no recording" : "No signal";
  }

  // The device's battery charge, from the statuses (and the station's hello): item.batteryPct
  // (null: the device reports none, or its signal is silent or closed) and item.batteryLow (at
  // or below the BATTERY_LOW alarm's limit; the server says which, from its settings). Shown
  // only while the signal comes, leads on or off: a silent device's last charge is the past,
  // and an old number shown as current is worse than none (as for the heart rate). A low one
  // is a badge of its own colours ("low"), readable on any tile.
  function showBattery(element, item) {
    var pct = item.batteryPct;
    var shown = pct !== null && pct !== undefined && !silent(item) &&
      (item.signal === "live" || item.signal === "leads_off");
    element.hidden = !shown;
    element.classList.toggle("low", shown && !!item.batteryLow);
    if (shown) {
      element.textContent = "Battery " + pct + " %";
      element.title = item.batteryLow ? "Battery low: charge or swap the device" :
        "The device's battery charge, as it last reported it";
    }
  }

  // what a status (or a station hello's tile) says of the charge
  function batteryFromStatus(item, status) {
    if (!("battery_pct" in status)) { return; }
    item.batteryPct = status.battery_pct;
    item.batteryLow = !!status.battery_low;
  }

  // what a samples or wave message says of the signal: the newest samples carry the device's
  // lead state; older ones (a backlog's overlap, a late chunk) only say that data comes
  function signalAfterSamples(item, message, newest) {
    if (newest) { return message.lead_off ? "leads_off" : "live"; }
    return item.signal === "leads_off" ? "leads_off" : "live";
  }

  // options: url() (the path and query to connect to, asked at each try), onMessage(message),
  // onState(state, waitMs).
  function connect(options) {
    var socket = null;
    var pingTimer = null;
    var watchTimer = null;
    var retryTimer = null;
    var lastHeardAt = 0;
    var attempt = 0;
    var failedOpens = 0;  // sockets in a row that closed without ever opening
    var signedOutAnswers = 0;  // "signed out" answers in a row (SIGNED_OUT_RECHECK_MS)
    var stopped = false;

    function forget() {
      clearInterval(pingTimer);
      clearInterval(watchTimer);
      pingTimer = watchTimer = null;
      if (socket) {
        // Its events no longer matter: a dead socket's close event can come minutes late.
        socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
        try { socket.close(); } catch (error) { /* already closed */ }
        socket = null;
      }
    }

    function retry() {
      forget();
      if (stopped) { return; }
      var ceiling = Math.min(MAX_DELAY_MS, 1000 * Math.pow(2, attempt));
      var waitMs = Math.round(ceiling * (0.5 + 0.5 * Math.random()));
      attempt += 1;
      options.onState("reconnecting", waitMs);
      clearTimeout(retryTimer);
      retryTimer = setTimeout(open, waitMs);
    }

    function stop(state) {
      stopped = true;
      forget();
      clearTimeout(retryTimer);
      options.onState(state);
    }

    function checkSession() {
      forget();
      failedOpens = 0;
      // Signed out, the page redirects to the login page; "manual" keeps that visible. A
      // patient no longer assigned answers 404.
      fetch(window.location.href, { credentials: "same-origin", redirect: "manual",
        cache: "no-store" }).then(function (response) {
        if (response.type === "opaqueredirect" || response.status === 401 ||
            response.status === 403) {
          signedOutAnswers += 1;
          if (signedOutAnswers >= 2) { stop("signed-out"); return; }
          clearTimeout(retryTimer);
          retryTimer = setTimeout(checkSession, SIGNED_OUT_RECHECK_MS);
        } else if (response.status === 404) {
          stop("access-ended");
        } else {
          signedOutAnswers = 0;
          retry();
        }
      }).catch(retry);  // the server is unreachable: not a sign-out
    }

    function open() {
      retryTimer = null;
      if (stopped) { return; }
      var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      var current = new WebSocket(scheme + window.location.host + options.url());
      var opened = false;
      socket = current;
      lastHeardAt = Date.now();  // a socket that never opens counts as silent too
      current.onopen = function () {
        opened = true;
        failedOpens = 0;
        attempt = 0;
        lastHeardAt = Date.now();
        options.onState("connected");
        pingTimer = setInterval(function () {
          if (current.readyState === WebSocket.OPEN) {
            current.send(JSON.stringify({ type: "ping", id: Date.now() }));
          }
        }, PING_MS);
      };
      current.onmessage = function (event) {
        lastHeardAt = Date.now();
        options.onMessage(JSON.parse(event.data));
      };
      current.onclose = function (event) {
        if (event.code === 4403) { stop("access-ended"); return; }
        if (event.code === 4401) { checkSession(); return; }
        if (!opened) {
          failedOpens += 1;
          if (failedOpens >= FAILED_OPENS_BEFORE_CHECK) { checkSession(); return; }
        }
        retry();
      };
      watchTimer = setInterval(function () {
        if (Date.now() - lastHeardAt > SILENT_MS) { retry(); }
      }, 1000);
    }

    function now() {  // back online or shown again: try at once instead of waiting
      if (stopped) { return; }
      if (retryTimer) {
        clearTimeout(retryTimer);
        open();
      } else if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ type: "ping", id: Date.now() }));
      }
    }
    window.addEventListener("online", now);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") { now(); }
    });
    open();
  }

  // What a page's connection line says in each state, whether what it shows is current, and
  // what the banner across its top says when it is not. A page that stopped (signed out, access
  // ended) says so first: "connection lost" would have staff wait for a reconnect that never
  // comes, in front of a trace that looks live.
  function describe(state, waitMs) {
    if (state === "connected") {
      return { state: state, text: "connected", current: true, error: false, banner: "" };
    }
    if (state === "reconnecting") {
      var text = "connection lost · reconnecting in " + Math.max(1, Math.round(waitMs / 1000)) +
        " s";
      return { state: state, text: text, current: false, error: true,
        banner: "Connection to the server lost: nothing shown is current, alarms included (" +
          text + ")." };
    }
    if (state === "access-ended") {
      return { state: state, text: "access ended: this patient is no longer assigned to you",
        current: false, error: true,
        banner: "Access ended: this patient is no longer assigned to you. Nothing shown is " +
          "current, alarms included." };
    }
    return { state: "signed-out", text: "signed out: log in again", current: false, error: true,
      banner: "Signed out: log in again to keep receiving. Nothing shown is current, alarms " +
        "included. " };
  }

  // The live pages' banner (hidden while connected), with a way back once signed out: the page
  // itself, which the server answers with the login page and brings back after it.
  function showBanner(banner, described) {
    banner.hidden = described.current;
    banner.textContent = described.banner;
    if (described.state === "signed-out") {
      var link = document.createElement("a");
      link.href = window.location.href;
      link.className = "log-in-again";
      link.textContent = "Log in";
      banner.appendChild(link);
    }
  }

  window.CardioSpike = window.CardioSpike || {};
  window.CardioSpike.liveSocket = connect;
  window.CardioSpike.describeConnection = describe;
  window.CardioSpike.showConnectionBanner = showBanner;
  window.CardioSpike.signalLost = signalLost;
  window.CardioSpike.signalText = signalText;
  window.CardioSpike.leadsOff = leadsOff;
  window.CardioSpike.signalAfterSamples = signalAfterSamples;
  window.CardioSpike.showBattery = showBattery;
  window.CardioSpike.batteryFromStatus = batteryFromStatus;
})();
