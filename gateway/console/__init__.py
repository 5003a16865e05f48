"""The browser console: a page for operators (call an agent, tune its voice) and the browser carrier."""
