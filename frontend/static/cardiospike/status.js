// Shows in the top bar whether the page's live (websocket) connection to the server is up
// (livesocket.js notices a dead one and reconnects).
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
