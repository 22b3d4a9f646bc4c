mod clients;
mod durability;
mod flight;
mod kafka;
mod pg;
mod server;
mod tsbs;
mod writes;
