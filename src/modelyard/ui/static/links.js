/* modelyard: links in the MLflow UI's form (/#/experiments/1/runs/<id>) open the matching
 * page. The fragment never reaches the server, so it is sent on as /ui/link?to=<fragment>. */
(function () {
  "use strict";
  var hash = window.location.hash;
  if (hash.length < 2 || hash.charAt(1) !== "/") { return; }
  var base = document.body.getAttribute("data-base") || "";
  window.location.replace(base + "/ui/link?to=" + encodeURIComponent(hash.slice(1)));
})();
