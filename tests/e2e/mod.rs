mod clients;
mod durability;
mod flight;
mod server;
mod writes;
