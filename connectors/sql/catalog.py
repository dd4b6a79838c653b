"""The SQL destinations as the registry sees them (entry point group ``exporter.sinks``): key,
URL form, pip extra and the options the SQL sink reads. Imports no driver: the factory
(``connectors.sql:create_sink``) loads the URL's driver when a sink is made."""
from __future__ import annotations

from exporter.options import Option, secret
from exporter.registry import Destination

OPTIONS = (
    *secret("password", "database password"),
    Option("url_env", "env", None, "environment variable holding the whole database URL, password included "
           "(--to-url-env)", secret=True),
    Option("schema", "text", None, "schema holding the tables (PostgreSQL, SQL Server); default: the connection's"),
    Option("media_in_db", "bool", False, "also store media bytes as BLOBs in media.content (--media-in-db)"),
    Option("media_dir", "path", None, "write media files into this folder; media.path is relative to it"),
    Option("media_in_db_max_bytes", "size", 256 << 20, "largest media stored as one BLOB value", min=1),
    Option("max_columns", "int", None, "a narrower column limit than the database's", min=1),
    Option("rows_per_batch", "int", None, "rows per load statement; default: the database's", min=1),
    Option("loader", "text", None, "force a loader: generic (executemany) everywhere; copy (PostgreSQL), "
           "multirow (MariaDB/MySQL; loaddata is read as multirow); default: the fastest the driver allows",
           choices=("generic", "copy", "multirow", "loaddata")),
    Option("background_load", "bool", None, "load and commit each batch on a background thread while the next "
           "is read (PostgreSQL, MariaDB/MySQL); default: on for MariaDB/MySQL, off for PostgreSQL"),
)

_FACTORY = "exporter.connectors.sql:create_sink"


def _sql(order: int, key: str, url_form: str, description: str, schemes: tuple[str, ...], extra: str | None = None,
         modules: tuple[str, ...] = ()) -> Destination:
    return Destination(key, _FACTORY, description, OPTIONS, url_form, schemes, extra, modules, order, url_query=True)


SQLITE = _sql(30, "sqlite", "sqlite:///path.db", "SQLite database (embedded default)", ("sqlite",))
POSTGRES = _sql(40, "postgres", "postgresql+psycopg://user@host:5432/db",
                "PostgreSQL (binary COPY, merged through staging when keys exist)", ("postgresql", "postgres"), "postgres")
MYSQL = _sql(50, "mysql", "mysql+pymysql://user@host:3306/db",
             "MariaDB / MySQL (INSERT of JSON_TABLE rows on MariaDB 10.6+, else multi-row; merged with "
             "ON DUPLICATE KEY UPDATE)", ("mysql", "mariadb"), "mysql")
MSSQL = _sql(60, "mssql", "mssql+pyodbc://user@dsn", "Microsoft SQL Server (pyodbc fast_executemany)", ("mssql",), "mssql")
ACCESS = _sql(70, "access", "access+pyodbc://@dsn", "Microsoft Access (sqlalchemy-access)", ("access",), "access",
              ("sqlalchemy_access",))
