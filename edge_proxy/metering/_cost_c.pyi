# The compiled cost rule's API (built from _fastpath/cost.pyx): the same as its twin, model_price.cost_of.
from .model_price import Cost, ModelPrice, Tokens

def cost_of(price: ModelPrice, usage: Tokens) -> Cost: ...
