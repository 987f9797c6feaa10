"""PostgreSQL: connection, the queries in sql/, migrations, the exactly-once store."""
