/* In the frame of /embed/{keyword}: tell the host page (static/embed.js) the height of
   the content, so that the frame never scrolls inside, and that a signup was made.
   Messages go only to the origins the campaign lets frame it (<html data-optin-parents>,
   its frame_ancestors); when that is "*", only the height, which says nothing. */
(function () {
  "use strict";
  if (window.parent === window) return;
  var root = document.documentElement;
  var parents = (root.getAttribute("data-optin-parents") || "").split(" ").filter(Boolean);
  var anyone = parents.indexOf("*") !== -1;

  function tell(message, harmless) {
    if (anyone) {
      if (harmless) window.parent.postMessage(message, "*");
      return;
    }
    // A targetOrigin that is not the parent's drops the message: only the host gets it.
    parents.forEach(function (origin) { window.parent.postMessage(message, origin); });
  }

  var last = 0;
  function resize() {
    var height = Math.ceil(root.getBoundingClientRect().height);
    if (height !== last) {
      last = height;
      tell({ type: "optin:resize", height: height }, true);
    }
  }

  function start() {
    resize();
    if (window.ResizeObserver) new ResizeObserver(resize).observe(document.body);
    window.addEventListener("resize", resize);
    var state = root.getAttribute("data-optin-state");
    if (state) tell({ type: "optin:signup", state: state }, false);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
  window.addEventListener("load", resize);
})();
