-- One database for the saga log, and one per service: each service owns its business state.
CREATE DATABASE saga;
CREATE DATABASE orders;
CREATE DATABASE payments;
CREATE DATABASE inventory;
CREATE DATABASE shipping;
