"""MRML table nodes ⇄ pandas DataFrames, shared by the modules."""

from __future__ import annotations

import numpy as np
import slicer
import vtk


def dataFrameToTable(df, tableNode=None, name: str = "Measurements"):
    """Fill a table node from a DataFrame: numeric columns as double arrays, the rest as strings
    (missing values as empty cells), so Slicer's table view sorts numbers and plots can use them."""
    if tableNode is None:
        tableNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = tableNode.GetTable()
    wasModifying = tableNode.StartModify()
    table.Initialize()
    for column in df.columns:
        values = df[column]
        if values.dtype.kind in "biuf":
            array = vtk.vtkDoubleArray()
            for v in values.astype(float):
                array.InsertNextValue(v)
        else:
            array = vtk.vtkStringArray()
            for v in values:
                array.InsertNextValue("" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
        array.SetName(str(column))
        table.AddColumn(array)
    tableNode.Modified()
    tableNode.EndModify(wasModifying)
    return tableNode


def tableToDataFrame(tableNode):
    """DataFrame of a table node (``slicer.util.dataframeFromTable``); None when no node is given."""
    return None if tableNode is None else slicer.util.dataframeFromTable(tableNode)


def barChart(df, labelColumn: str, valueColumn: str, name: str, title: str):
    """A bar chart of ``valueColumn`` per ``labelColumn`` of a DataFrame: a table node called ``name``, its
    plot series and a plot chart node titled ``title`` (returned; show it with the plot view)."""
    chartTable = dataFrameToTable(df[[labelColumn, valueColumn]].reset_index(drop=True), None, name)
    series = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", title)
    series.SetAndObserveTableNodeID(chartTable.GetID())
    series.SetXColumnName(labelColumn)
    series.SetYColumnName(valueColumn)
    series.SetLabelColumnName(labelColumn)
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeBar)
    chart = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotChartNode", title)
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle(title)
    chart.SetYAxisTitle(valueColumn)
    return chart
