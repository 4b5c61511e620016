-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d).
-- One database per service that keeps relational state: a service never reads
-- another service's database (see ARCHITECTURE.md). POSTGRES_USER (opsline) owns them.
CREATE DATABASE "gateway";
CREATE DATABASE "appmanager";
CREATE DATABASE "build";
CREATE DATABASE "deploy";
CREATE DATABASE "dataops_ingest";
CREATE DATABASE "aiops_detector";
