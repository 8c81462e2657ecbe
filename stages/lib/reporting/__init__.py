"""The HTML report's builders and sections, and the static figures."""
