mod durability;
mod server;
mod writes;
