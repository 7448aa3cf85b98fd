"""The portal: server-rendered pages (Jinja2) for employees, admins and data engineers."""
