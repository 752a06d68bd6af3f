-- One database per part (each part owns its tables; none reads another's).
-- Run once by the postgres image on an empty data volume, as POSTGRES_USER (lienthong).
CREATE DATABASE lienthong_gateway OWNER lienthong ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE lienthong_intake OWNER lienthong ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE lienthong_document OWNER lienthong ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE lienthong_signing OWNER lienthong ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE lienthong_audit OWNER lienthong ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE lienthong_notify OWNER lienthong ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE lienthong_console OWNER lienthong ENCODING 'UTF8' TEMPLATE template0;
