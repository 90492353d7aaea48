// MathJax 2.7, served from this site (assets/mathjax/, copied from the jupyter-server-mathjax
// package by tools/build_docs.py). Read before MathJax.js loads. The package ships one combined
// configuration and the STIX-Web web fonts, so the HTML-CSS output uses those fonts.
window.MathJax = {
  config: ["TeX-AMS-MML_HTMLorMML-full.js"],
  tex2jax: {inlineMath: [["$", "$"], ["\\(", "\\)"]], displayMath: [["$$", "$$"], ["\\[", "\\]"]],
            processEscapes: true},
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
               linebreaks: {automatic: true}},
  showMathMenu: false,
  messageStyle: "none"
};
