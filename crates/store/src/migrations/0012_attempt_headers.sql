-- The headers each attempt's request carried (one `name: value` line each), shown with
-- the attempt in the API and the dashboard.
ALTER TABLE attempts ADD COLUMN request_headers TEXT;
