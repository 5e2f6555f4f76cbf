// test-looper browser terminal: xterm.js + fit addon over /deployments/<id>/socket.
// Client→server: binary records (int32be 0, int32be N, N UTF-8 bytes) for keys and
// (int32be 1, int32be cols, int32be rows) for resizes. Server→client: a text frame
// {"offset": N} naming where the following bytes start, then binary frames of raw terminal
// bytes. On a dropped socket it prints <<<< DISCONNECTED >>>> and reconnects from the next
// byte it needs (?offset=): no gap, no duplicate. A normal close means the session ended.
(function () {
  "use strict";
  var box = document.getElementById("terminal");
  var statusLine = document.getElementById("terminal-status");
  if (!box || !window.Terminal) {
    if (statusLine) statusLine.textContent = "xterm.js is missing (run deploy/install_deps.sh xterm)";
    return;
  }
  var path = box.getAttribute("data-socket");
  var next = 0;
  var ended = false;
  var socket = null;
  var encoder = new TextEncoder();
  // lineHeight above 1 keeps underscores from being clipped between rows.
  var term = new window.Terminal({ cursorBlink: true, scrollback: 10000, fontSize: 14, lineHeight: 1.2 });
  var fit = window.FitAddon ? new window.FitAddon.FitAddon() : null;
  if (fit) term.loadAddon(fit);
  term.open(box);
  function refit() { if (fit) { try { fit.fit(); } catch (e) {} } }
  refit();
  window.addEventListener("resize", refit);
  term.focus();

  function say(text) { if (statusLine) statusLine.textContent = text; }

  function sendKeys(bytes) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    var buffer = new ArrayBuffer(8 + bytes.length);
    var view = new DataView(buffer);
    view.setInt32(0, 0);
    view.setInt32(4, bytes.length);
    new Uint8Array(buffer, 8).set(bytes);
    socket.send(buffer);
  }
  function sendResize() {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    var buffer = new ArrayBuffer(12);
    var view = new DataView(buffer);
    view.setInt32(0, 1);
    view.setInt32(4, term.cols);
    view.setInt32(8, term.rows);
    socket.send(buffer);
  }
  term.onData(function (data) {
    sendKeys(encoder.encode(data));
  });
  term.onResize(sendResize);

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + path + "?offset=" + next);
    socket.binaryType = "arraybuffer";
    socket.onopen = function () { say("connected"); sendResize(); };
    socket.onmessage = function (event) {
      if (typeof event.data === "string") {
        try { next = JSON.parse(event.data).offset; } catch (e) {}
        return;
      }
      var bytes = new Uint8Array(event.data);
      term.write(bytes);
      next += bytes.length;
      box.setAttribute("data-offset", String(next));
    };
    socket.onclose = function (event) {
      term.write("\r\n\r\n<<<< DISCONNECTED >>>>\r\n\r\n");
      if (event.code === 1000) {
        ended = true;
        say("session ended");
        box.setAttribute("data-ended", "1");
        return;
      }
      if (!ended) { say("disconnected; reconnecting from byte " + next + "…"); setTimeout(connect, 1000); }
    };
    window.__tlTerminalSocket = socket;
  }

  // The terminal's text (tests read it).
  window.__tlTerminalText = function () {
    var buffer = term.buffer.active;
    var lines = [];
    for (var i = 0; i < buffer.length; i++) {
      var line = buffer.getLine(i);
      if (line) lines.push(line.translateToString(true));
    }
    return lines.join("\n");
  };
  window.__tlTerminal = term;
  connect();
})();
