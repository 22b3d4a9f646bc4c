mod clients;
mod durability;
mod flight;
mod pg;
mod server;
mod writes;
