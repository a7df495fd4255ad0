"""Background jobs: rows in the database, run by Dramatiq workers, sent after commit."""
