"""Results tables (markdown, JSON) and plots built from the JSON files that stages leave."""
