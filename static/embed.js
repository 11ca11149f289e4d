/* optin-pages embed: put the signup form of a campaign on your own page.

     <script async src="https://texts.example.com/static/embed.js"
             data-optin-campaign="JOIN" data-optin-src="homepage"></script>

   Writes an iframe of https://texts.example.com/embed/JOIN?src=homepage where the
   script is, sized to its content from the frame's messages (it never scrolls inside),
   in the language of data-optin-lang, else of the host page's <html lang> (when the
   campaign offers it), and dispatches an "optin:signup" event (detail: campaign, state, src) on the script
   element, bubbling to the document, when a signup is made: count it with your own
   analytics. No dependencies, nothing but this file and the frame. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var campaign = script.getAttribute("data-optin-campaign") || "";
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(campaign)) return;
  var origin = new URL(script.src, document.baseURI).origin;
  var source = script.getAttribute("data-optin-src");
  var frameUrl = new URL("/embed/" + campaign, origin);
  var pageUrl = new URL("/" + campaign, origin);
  if (source) {
    frameUrl.searchParams.set("src", source);
    pageUrl.searchParams.set("src", source);
  }
  var lang = (script.getAttribute("data-optin-lang") || document.documentElement.lang || "").split("-")[0].toLowerCase();
  if (/^[a-z]{2,3}$/.test(lang)) {
    frameUrl.searchParams.set("lang", lang);
    pageUrl.searchParams.set("lang", lang);
  }
  var words = lang === "es" ? "Inscríbase para recibir mensajes de texto" : "Sign up for text messages";

  var frame = document.createElement("iframe");
  frame.src = frameUrl.href;
  frame.title = script.getAttribute("data-optin-title") || words;
  frame.style.display = "block";
  frame.style.width = "100%";
  frame.style.minHeight = "22rem";
  frame.style.border = "0";
  frame.style.overflow = "hidden";
  // For browsers that show no frames: the full page.
  var fallback = document.createElement("a");
  fallback.href = pageUrl.href;
  fallback.textContent = words;
  frame.appendChild(fallback);
  script.parentNode.insertBefore(frame, script.nextSibling);

  window.addEventListener("message", function (event) {
    // Only our own frame, from the service's origin, is listened to.
    if (event.origin !== origin || event.source !== frame.contentWindow) return;
    var data = event.data;
    if (!data || typeof data !== "object") return;
    if (data.type === "optin:resize" && typeof data.height === "number" && isFinite(data.height)) {
      var height = Math.min(Math.max(Math.round(data.height), 80), 5000);
      frame.style.minHeight = "0";
      frame.style.height = height + "px";
    } else if (data.type === "optin:signup" && (data.state === "delivered" || data.state === "pending")) {
      script.dispatchEvent(new CustomEvent("optin:signup", {
        bubbles: true,
        detail: { campaign: campaign, state: data.state, src: source }
      }));
    }
  });
})();
