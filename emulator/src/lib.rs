//! A faithful local stand-in for the Azure services acr-autoattach talks to and is driven by: ARM, Microsoft
//! Graph, the App Service managed-identity endpoint, Resource Graph, Event Grid delivery and the Azure
//! Functions host. Every server binds 127.0.0.1 only.

pub mod bus;
pub mod eventgrid;
pub mod functions_host;
