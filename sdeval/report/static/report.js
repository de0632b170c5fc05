// Sortable tables and click-to-enlarge images; no network, no libraries.
(function () {
  "use strict";
  function cellKey(row, index) {
    const cell = row.children[index];
    if (!cell) return "";
    const raw = cell.getAttribute("data-sort");
    const text = raw !== null ? raw : cell.textContent.trim();
    const number = parseFloat(text);
    return text !== "" && !isNaN(number) && isFinite(text) ? number : text.toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    const headers = table.querySelectorAll("thead th");
    headers.forEach(function (th, index) {
      th.addEventListener("click", function () {
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        rows.sort(function (a, b) {
          const x = cellKey(a, index), y = cellKey(b, index);
          // Empty cells (no value) always sort last.
          if (x === "" || y === "") return x === y ? 0 : x === "" ? 1 : -1;
          if (typeof x === typeof y) return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
          return typeof x === "number" ? -1 : 1;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  const overlay = document.getElementById("overlay");
  const big = overlay.querySelector("img");
  const caption = overlay.querySelector(".caption");
  document.querySelectorAll("img.thumb").forEach(function (img) {
    img.addEventListener("click", function () {
      big.src = img.getAttribute("src");
      big.alt = img.alt;
      caption.textContent = img.getAttribute("title") || img.alt;
      overlay.classList.add("open");
    });
  });
  function close() { overlay.classList.remove("open"); }
  overlay.addEventListener("click", close);
  document.addEventListener("keydown", function (event) { if (event.key === "Escape") close(); });
})();
