// sockproxy report --html: sorting by column and a hover panel. The page reads the same without it.
(function () {
  'use strict';
  document.documentElement.classList.add('js');
  var panel = document.getElementById('hover');

  // Hover: the element's own <title> (the record's key fields) in a panel that stays put.
  document.addEventListener('mouseover', function (e) {
    var el = e.target.closest ? e.target.closest('[data-k]') : null;
    var title = null;
    if (el) {
      for (var c = el.firstElementChild; c; c = c.nextElementSibling) {
        if (c.tagName.toLowerCase() === 'title') { title = c; break; }
      }
    }
    if (title) {
      panel.textContent = title.textContent;
      panel.hidden = false;
    } else {
      panel.hidden = true;
    }
  });

  // Sorting: a click on a header sorts by that column (numbers by their data-v), again to reverse.
  function sortBy(th) {
    var table = th.closest('table');
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.getAttribute('data-type') === 'num';
    var descending = th.getAttribute('aria-sort') !== 'descending';
    var heads = th.parentNode.children;
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute('aria-sort');
    th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var key = function (row) {
      var cell = row.cells[col];
      if (!cell) return numeric ? -Infinity : '';
      return numeric ? Number(cell.getAttribute('data-v')) : cell.textContent.toLowerCase();
    };
    rows.sort(function (a, b) {
      var ka = key(a);
      var kb = key(b);
      var d = ka < kb ? -1 : ka > kb ? 1 : 0;
      return descending ? -d : d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  var heads = document.querySelectorAll('table.sortable th');
  for (var i = 0; i < heads.length; i++) {
    heads[i].tabIndex = 0;
    heads[i].addEventListener('click', function (e) { sortBy(e.currentTarget); });
    heads[i].addEventListener('keydown', function (e) {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sortBy(e.currentTarget); }
    });
  }
})();
