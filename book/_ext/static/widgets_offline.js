// Glue between the vendored ipywidgets HTML manager and the offline book (loaded by pages with
// widgets, between require.js and embed-amd.js; see nb_ipywidgets_js in _config.yml).
(function () {
  // 1. Each bundled AMD module (@jupyter-widgets/base, /controls, /html-manager, and the embed
  //    script itself) finds the font files its CSS names next to its own module URL, which
  //    require.js resolves relative to the page; point every such name at _static/html-manager/,
  //    where scripts/vendor_assets.sh put embed-amd.js and the fonts. (Without the general entry,
  //    a page whose widgets need an icon font asked for book/@jupyter-widgets/<font>.)
  var root = document.documentElement.dataset.content_root || "";
  require.config({
    paths: {
      "@jupyter-widgets/html-manager/dist": root + "_static/html-manager",
      "@jupyter-widgets": root + "_static/html-manager"
    }
  });
  // 2. @jupyter-widgets/base 6 typesets widget labels with MathJax 2's MathJax.Hub.Queue, but the
  //    book loads MathJax 3 (deferred, so it exists once the document is parsed): map the call.
  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (!mathjax || mathjax.Hub || !mathjax.typesetPromise) return;
    mathjax.Hub = {
      Queue: function (job) {
        var element = job && job[2];
        mathjax.startup.promise.then(function () {
          return mathjax.typesetPromise(element ? [element] : undefined);
        });
      }
    };
  });
})();
