/* modelyard: images logged with a step, one key at a time, chosen with a slider. Without
 * JavaScript the page shows the last step's image and a link to every step. */
(function () {
  "use strict";
  function start() {
    document.querySelectorAll("figure.image-key").forEach(function (figure) {
      var links = figure.querySelectorAll("ol.image-steps a[data-preview]");
      var img = figure.querySelector("img");
      var caption = figure.querySelector(".image-step");
      if (!links.length || !img) { return; }
      var slider = document.createElement("input");
      slider.type = "range";
      slider.min = "0";
      slider.max = String(links.length - 1);
      slider.value = String(links.length - 1);
      slider.className = "step-slider";
      slider.setAttribute("aria-label", "step");
      var show = function () {
        var link = links[parseInt(slider.value, 10)];
        img.src = link.getAttribute("data-preview");
        img.alt = figure.getAttribute("data-key") + " at step " + link.getAttribute("data-step");
        caption.textContent = "step " + link.getAttribute("data-step");
        figure.setAttribute("data-step", link.getAttribute("data-step"));
      };
      slider.addEventListener("input", show);
      figure.insertBefore(slider, figure.querySelector("ol.image-steps"));
      figure.querySelector("ol.image-steps").setAttribute("hidden", "");
      show();
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
