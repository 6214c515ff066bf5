// Shows whether the page's live (websocket) connection to the server is up, and
// reconnects with a growing delay when it drops.
(function () {
  "use strict";
  var badge = document.getElementById("live-status");
  if (!badge || !window.WebSocket) { return; }
  var delayMs = 1000;
  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/ws/status/");
    var pingTimer = null;
    socket.onopen = function () { delayMs = 1000; };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "hello" || message.type === "pong") {
        badge.textContent = "connected";
        badge.classList.add("online");
      }
    };
    socket.onclose = function () {
      badge.textContent = "disconnected";
      badge.classList.remove("online");
      if (pingTimer) { clearInterval(pingTimer); }
      setTimeout(connect, delayMs);
      delayMs = Math.min(delayMs * 2, 30000);
    };
    pingTimer = setInterval(function () {
      if (socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify({type: "ping"})); }
    }, 25000);
  }
  connect();
})();
