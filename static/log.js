// test-looper live log: a websocket of binary frames (8-byte big-endian offset + bytes).
// Tracks the next byte it needs, drops anything it already has, and on reconnect asks for
// ?offset=<next byte>: no gap, no duplicate. Renders into xterm.js when available (auto-scroll
// is the terminal's), otherwise into a <pre> that follows the end unless the user scrolled up.
(function () {
  "use strict";
  var box = document.getElementById("log");
  var statusLine = document.getElementById("log-status");
  if (!box) return;
  var path = box.getAttribute("data-socket");
  var next = 0;
  var done = false;
  var decoder = new TextDecoder("utf-8");
  var term = null;
  var pre = null;
  box.setAttribute("data-offset", "0");

  if (window.Terminal) {
    term = new window.Terminal({ convertEol: true, scrollback: 100000, disableStdin: true, rows: 30 });
    term.open(box);
    if (window.FitAddon) {
      var fit = new window.FitAddon.FitAddon();
      term.loadAddon(fit);
      try { fit.fit(); } catch (e) {}
      window.addEventListener("resize", function () { try { fit.fit(); } catch (e) {} });
    }
  }
  // The plain-text copy is always kept (tests and copy/paste read it).
  pre = document.createElement("pre");
  pre.id = "log-text";
  pre.className = term ? "log-text hidden" : "log-text";
  box.appendChild(pre);

  function write(bytes) {
    var text = decoder.decode(bytes, { stream: true });
    var follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(document.createTextNode(text));
    if (follow) pre.scrollTop = pre.scrollHeight;
    if (term) term.write(text);
  }

  function say(text) { if (statusLine) statusLine.textContent = text; }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + path + "?offset=" + next);
    socket.binaryType = "arraybuffer";
    socket.onopen = function () { say("streaming live from byte " + next); };
    socket.onmessage = function (event) {
      if (!(event.data instanceof ArrayBuffer) || event.data.byteLength < 8) return;
      var view = new DataView(event.data);
      var offset = view.getUint32(0) * 4294967296 + view.getUint32(4);
      var bytes = new Uint8Array(event.data, 8);
      var end = offset + bytes.length;
      if (end <= next) return;               // all already shown
      if (offset > next) { socket.close(); return; } // a gap: reconnect from what we have
      write(bytes.subarray(next - offset));
      next = end;
      box.setAttribute("data-offset", String(next));
    };
    socket.onclose = function (event) {
      if (event.code === 1000) { done = true; say("log complete (" + next + " bytes)"); box.setAttribute("data-complete", "1"); return; }
      if (!done) { say("disconnected; resuming from byte " + next + "…"); setTimeout(connect, 1000); }
    };
    window.__tlLogSocket = socket;
  }
  connect();
})();
