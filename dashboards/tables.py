"""Table presentation: sorting, searching and paging rows held in memory, and the text of their cells.

Nothing here reads the database: the page reads (dashboards.selectors) build the rows.
"""

from dataclasses import dataclass


@dataclass
class TablePage:
    rows: list
    number: int
    pages: int
    count: int  # rows on every page
    per_page: int

    @property
    def first(self) -> int:
        return (self.number - 1) * self.per_page + 1 if self.count else 0

    @property
    def last(self) -> int:
        return min(self.number * self.per_page, self.count)

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def sort_rows(rows: list, key: str, descending: bool) -> list:
    """Rows by the attribute `key`, ties by label; numbers and text alike."""
    ordered = sorted(rows, key=lambda row: row.label.lower())
    if key == "label":
        return sorted(ordered, key=lambda row: row.label.lower(), reverse=descending)
    return sorted(ordered, key=lambda row: getattr(row, key), reverse=descending)


def search_rows(rows: list, text: str) -> list:
    """Rows whose search text (name, email, teams) contains every word of `text`."""
    words = text.lower().split()
    if not words:
        return rows
    return [row for row in rows if all(word in row.search_text for word in words)]


def clamp_page(number: int, count: int, per_page: int) -> tuple[int, int]:
    """(page, pages) of `count` rows: at least one page, and a number past the end gives the last."""
    pages = max(1, -(-count // per_page))
    return min(max(1, number), pages), pages


def page_of(rows: list, number: int, per_page: int) -> TablePage:
    """Page `number` (1-based) of `rows`; a number past the end gives the last page."""
    number, pages = clamp_page(number, len(rows), per_page)
    return TablePage(rows[(number - 1) * per_page : number * per_page], number, pages, len(rows), per_page)


def duration_text(seconds: float) -> str:
    """A duration as people read it: "45s", "26m 9s", "3h 05m"; "—" for none."""
    if not seconds:
        return "—"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours_, minutes = divmod(minutes, 60)
    return f"{hours_}h {minutes:02d}m"
