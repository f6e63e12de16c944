"""People select rationales in a web page: the SQLite store, the page, agreement between people."""
